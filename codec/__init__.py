"""The dynamic-rate speech codec: ASR features, frame scheduling, quantisers, encoder and decoder."""

from __future__ import annotations

from typing import Any

__all__ = ["FlexiCodec", "FlexiCodecConfig", "CodecTokens", "TokenError", "bitrate", "bits_per_token"]

_EXPORTS = {
    "FlexiCodec": "codec.model",
    "FlexiCodecConfig": "codec.config",
    "CodecTokens": "codec.tokens",
    "TokenError": "codec.tokens",
    "bitrate": "codec.bitrates",
    "bits_per_token": "codec.bitrates",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import codec.common.errors` (the CLI's error path) must not pay for torch and the model code.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
