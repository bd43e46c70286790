"""Token files: `CodecTokens` saved as `.npz`, tied to the codec that made them by its config fingerprint.

Layout (format version 1; every entry a plain array, so `np.load(..., allow_pickle=False)` reads it):

    format            str   "flexitts-codec-tokens"
    format_version    int   1
    codec_fingerprint str   `FlexiCodecConfig.fingerprint()` of the encoding codec
    sample_rate       int   Hz of the audio the tokens decode to (16000)
    num_quantizers    int   codes per token, the FSQ included
    semantic_codes    int64 [B, G]
    acoustic_codes    int64 [B, Q-1, G]   (absent when num_quantizers == 1)
    token_lengths     int64 [B, G]        12.5 Hz frames per token, 0 on padding
    num_tokens        int64 [B]
    num_samples       int64 [B]           (absent when unknown)
    meta              str   JSON object: scheduler, merging_threshold, frame_rate (the requested target),
                            average_frame_rate, duration_seconds, and any extra keys the caller gave

Files are written atomically (a temporary file beside the target, renamed on success). `load_tokens` turns every
way a file can be wrong (missing, not an npz, truncated, from another tool, from another codec) into a one-line
`TokenFileError`.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codec.common.fileio import atomic_path
from codec.tokens import CodecTokens, TokenError

FORMAT_NAME = "flexitts-codec-tokens"
FORMAT_VERSION = 1
_HEADER_KEYS = ("format", "format_version", "codec_fingerprint", "sample_rate", "num_quantizers", "meta")

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "TokenFile", "TokenFileError", "codec_fingerprint", "load_tokens",
           "save_tokens"]


class TokenFileError(TokenError):
    """A token file that is missing, unreadable, malformed, or written by another codec."""


@dataclass
class TokenFile:
    """What `load_tokens` returns: the tokens and the facts recorded beside them."""

    tokens: CodecTokens
    codec_fingerprint: str
    sample_rate: int
    num_quantizers: int
    format_version: int = FORMAT_VERSION
    meta: dict[str, Any] = field(default_factory=dict)


def codec_fingerprint(codec: Any) -> str:
    """Fingerprint of a `FlexiCodec`, a `FlexiCodecConfig`, or a fingerprint string given as is."""
    if isinstance(codec, str):
        return codec
    config = getattr(codec, "config", codec)
    if not hasattr(config, "fingerprint"):
        raise TypeError(f"expected a FlexiCodec, a FlexiCodecConfig or a fingerprint string, got {type(codec).__name__}")
    return str(config.fingerprint())


def _check_limits(tokens: CodecTokens, codec: Any) -> None:
    """Validate `tokens` against the codec's codebook sizes when a model or config is given."""
    config = getattr(codec, "config", codec)
    if isinstance(config, str) or not hasattr(config, "semantic_codebook_size"):
        tokens.validate()
        return
    tokens.validate(config.semantic_codebook_size, config.codebook_size, config.max_len, config.max_quantizers)


def _json_safe(value: Any) -> Any:
    """Tensors, NumPy scalars and paths in `meta` as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def save_tokens(path: str | os.PathLike, tokens: CodecTokens, codec: Any, sample_rate: int | None = None,
                **meta: Any) -> Path:
    """Write `tokens` to `path` (`.npz`) atomically and return the path.

    Args:
        path: target file; its folder must exist (nothing is created, nothing is left behind on error).
        tokens: what `FlexiCodec.encode` returned (any batch size).
        codec: the encoding `FlexiCodec` (or its config, or its fingerprint string): recorded so that only a
            codec with the same layout decodes the file.
        sample_rate: Hz of the decoded audio (default: the codec's, else 16000).
        **meta: extra JSON-serialisable facts (e.g. scheduler="dp", merging_threshold=0.91, frame_rate=None).
    """
    target = Path(path)
    if target.is_dir():
        raise TokenFileError(f"'{target}' is a directory: give a file name such as tokens.npz")
    if not target.parent.is_dir():
        raise TokenFileError(f"cannot write '{target}': folder '{target.parent}' does not exist; create it first")
    if not isinstance(tokens, CodecTokens):
        raise TokenFileError(f"save_tokens takes CodecTokens, got {type(tokens).__name__}")
    _check_limits(tokens, codec)
    fingerprint = codec_fingerprint(codec)
    rate = sample_rate if sample_rate is not None else getattr(codec, "sample_rate", None)
    rate = int(rate) if rate is not None else int(getattr(getattr(codec, "config", codec), "sample_rate", 16000))
    frames = tokens.num_frames
    seconds = [float(n) / rate for n in tokens.num_samples.tolist()] if tokens.num_samples is not None else \
        [float(f) / 12.5 for f in frames.tolist()]
    info: dict[str, Any] = {
        "average_frame_rate": [round(float(r), 6) for r in tokens.frame_rate.tolist()],
        "duration_seconds": [round(s, 6) for s in seconds],
    }
    info.update(_json_safe(meta))
    try:
        meta_json = json.dumps(info, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TokenFileError(f"token file metadata must be JSON-serialisable ({' '.join(str(error).split())})") from None
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "codec_fingerprint": np.array(fingerprint),
        "sample_rate": np.array(rate, dtype=np.int64),
        "num_quantizers": np.array(tokens.num_quantizers, dtype=np.int64),
        "meta": np.array(meta_json),
        **tokens.to_arrays(),
    }
    with atomic_path(target, suffix=".tmp") as tmp:
        # A file object, not a name: np.savez would append ".npz" to a name without that suffix.
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return target


def _scalar(data: Any, key: str, kind: type, where: str) -> Any:
    value = np.asarray(data[key])
    if value.shape != ():
        raise TokenFileError(f"{where} is malformed: '{key}' should be a single value; re-encode the audio")
    if kind is str:
        if value.dtype.kind != "U":
            raise TokenFileError(f"{where} is malformed: '{key}' should be text; re-encode the audio")
        return str(value)
    if value.dtype.kind not in "iu":
        raise TokenFileError(f"{where} is malformed: '{key}' should be an integer; re-encode the audio")
    return int(value)


def load_tokens(path: str | os.PathLike, codec: Any = None) -> TokenFile:
    """Read a token file written by `save_tokens`.

    Args:
        path: the `.npz` file.
        codec: optional `FlexiCodec` (or config, or fingerprint) that will decode the tokens: a file written by a
            codec with another fingerprint is refused, and codes are checked against its codebook sizes.
    Returns:
        `TokenFile` with `.tokens` (`CodecTokens`), `.codec_fingerprint`, `.sample_rate`, `.num_quantizers`,
        `.format_version` and `.meta`.
    Raises:
        TokenFileError: one line, for a missing, non-npz, corrupt, foreign or newer-format file.
    """
    source = Path(path)
    where = f"token file '{source}'"
    if not source.exists():
        raise TokenFileError(f"{where} does not exist: check the path (make one with `flexitts codec encode`)")
    if not source.is_file():
        raise TokenFileError(f"{where} is not a file: give a .npz written by `flexitts codec encode`")
    if not zipfile.is_zipfile(source):
        raise TokenFileError(f"{where} is not an .npz archive (or is truncated): give a file written by "
                             "`flexitts codec encode`")
    try:
        with np.load(source, allow_pickle=False) as data:
            names = set(data.files)
            if "format" not in names or "codec_fingerprint" not in names:
                raise TokenFileError(f"{where} is an .npz but not a FlexiTTS token file: give a file written by "
                                     "`flexitts codec encode`")
            if _scalar(data, "format", str, where) != FORMAT_NAME:
                raise TokenFileError(f"{where} is an .npz but not a FlexiTTS token file: give a file written by "
                                     "`flexitts codec encode`")
            missing = [k for k in _HEADER_KEYS if k not in names]
            if missing:
                raise TokenFileError(f"{where} is malformed: it lacks {missing}; re-encode the audio")
            version = _scalar(data, "format_version", int, where)
            if version > FORMAT_VERSION:
                raise TokenFileError(f"{where} has format version {version}, newer than this FlexiTTS reads "
                                     f"({FORMAT_VERSION}): upgrade flexitts")
            if version < 1:
                raise TokenFileError(f"{where} has an invalid format version {version}; re-encode the audio")
            fingerprint = _scalar(data, "codec_fingerprint", str, where)
            rate = _scalar(data, "sample_rate", int, where)
            num_quantizers = _scalar(data, "num_quantizers", int, where)
            meta = json.loads(_scalar(data, "meta", str, where))
            arrays = {k: np.asarray(data[k]) for k in
                      ("semantic_codes", "acoustic_codes", "token_lengths", "num_tokens", "num_samples") if k in names}
    except TokenFileError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        # Truncated or damaged archives, bad headers, object arrays (refused: no pickle), bad JSON.
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise TokenFileError(f"{where} is corrupt ({type(error).__name__}: {reason}); re-encode the audio") from None
    if not isinstance(meta, dict):
        raise TokenFileError(f"{where} is malformed: 'meta' should be a JSON object; re-encode the audio")
    for key, value in arrays.items():
        if value.dtype.kind not in "iu":
            raise TokenFileError(f"{where} is malformed: '{key}' should hold integers, not {value.dtype}; "
                                 "re-encode the audio")
    if codec is not None:
        expected = codec_fingerprint(codec)
        if fingerprint != expected:
            raise TokenFileError(
                f"{where} was written by a codec with config fingerprint {fingerprint}, but this codec's is "
                f"{expected}: decode it with the codec that encoded it (--checkpoint) or re-encode the audio "
                "with this one")
    try:
        tokens = CodecTokens.from_arrays(arrays)
    except TokenError as error:
        raise TokenFileError(f"{where} holds invalid tokens ({error}); re-encode the audio") from None
    if tokens.num_quantizers != num_quantizers:
        raise TokenFileError(f"{where} is malformed: it records {num_quantizers} quantizers but holds "
                             f"{tokens.num_quantizers}; re-encode the audio")
    if rate <= 0:
        raise TokenFileError(f"{where} is malformed: sample rate {rate}; re-encode the audio")
    if codec is not None:
        codec_rate = getattr(codec, "sample_rate", None)
        if codec_rate is not None and int(codec_rate) != rate:
            raise TokenFileError(f"{where} decodes to {rate} Hz but this codec makes {codec_rate} Hz audio; "
                                 "decode it with the codec that encoded it")
        try:
            _check_limits(tokens, codec)
        except TokenError as error:
            raise TokenFileError(f"{where} does not fit this codec ({error}); re-encode the audio") from None
    return TokenFile(tokens, fingerprint, rate, num_quantizers, version, meta)
