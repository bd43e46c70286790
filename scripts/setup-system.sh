#!/usr/bin/env bash
# Install the Debian packages FlexiTTS needs, once. Does nothing when they are all present.
# mbrola and its voices are in Debian's contrib/non-free components, which the default sources lack,
# so a sources file of our own adds them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
packages=("$@")

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "setup: need root (or sudo) to install Debian packages: ${missing[*]}" >&2; exit 1
fi
sources=/etc/apt/sources.list.d/flexitts-nonfree.sources
if ! cmp -s "$here/flexitts-nonfree.sources" "$sources"; then
    "${sudo[@]}" cp "$here/flexitts-nonfree.sources" "$sources"
fi
echo "setup: installing Debian packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
