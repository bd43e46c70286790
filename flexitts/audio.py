"""Audio input/output and validation.

Reading uses `soundfile` (wav, flac, ogg, ...), resampling uses torchaudio. Waveforms are float32 tensors:
`[T]` when mono, `[C, T]` otherwise. Every failure raises `flexitts.errors.AudioError` with one line.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch

from flexitts.errors import AudioError
from flexitts.fileio import atomic_path

AudioSource = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor]

# Peak amplitude below which a whole signal counts as silence (-74 dBFS): no usable speech in it.
SILENCE_PEAK = 2e-4


@dataclass(frozen=True)
class AudioLimits:
    """Bounds a loaded waveform must satisfy; `None` disables a bound."""

    min_seconds: float | None = 0.3
    max_seconds: float | None = None


# A reference voice must be long enough to carry a timbre and short enough to fit the model's context.
REFERENCE_LIMITS = AudioLimits(min_seconds=0.3, max_seconds=30.0)


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'"
    if isinstance(source, bytes):
        return "the uploaded audio"
    return "the audio array"


def read_audio_file(source: str | os.PathLike | bytes) -> tuple[np.ndarray, int]:
    """Read a file (path or its bytes) with soundfile: returns (`[T, C]` float32 samples, sample rate)."""
    if isinstance(source, bytes):
        handle: object = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise AudioError(f"audio file '{path}' does not exist: check the path")
        if path.is_dir():
            raise AudioError(f"'{path}' is a directory, not an audio file: give a wav, flac or ogg file")
        handle = path
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(
            f"cannot read audio from {_describe(source)}: it is corrupt or not a format soundfile reads "
            f"(wav, flac, ogg) ({' '.join(str(error).split())})"
        ) from None
    return data, int(rate)


def _as_channels_first(array: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """Turn a 1-D `[T]` or 2-D `[C, T]`/`[T, C]` array into a float32 `[C, T]` tensor."""
    wav = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
    wav = wav.detach().to("cpu", torch.float32)
    if wav.dim() == 1:
        return wav.unsqueeze(0)
    if wav.dim() == 2:
        # The channel axis is the short one: no recording has more channels than samples.
        return wav if wav.shape[0] <= wav.shape[1] else wav.t().contiguous()
    raise AudioError(f"{what} has {wav.dim()} dimensions: give a 1-D [T] or 2-D [C, T] waveform")


def resample(wav: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample `[..., T]` from `orig_rate` to `target_rate` (band-limited sinc, torchaudio)."""
    if orig_rate == target_rate:
        return wav
    import torchaudio.functional as AF

    return AF.resample(wav, int(orig_rate), int(target_rate))


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """Average the channels of `[C, T]` into `[T]`; a `[T]` input is returned unchanged."""
    return wav.mean(dim=0) if wav.dim() == 2 else wav


def peak_normalize(wav: torch.Tensor, peak: float = 0.95) -> torch.Tensor:
    """Scale `[..., T]` so that its largest absolute sample is `peak`; silence is returned unchanged."""
    top = wav.abs().max()
    return wav if top <= 0 else wav * (peak / top)


def validate_audio(wav: torch.Tensor, sample_rate: int, limits: AudioLimits = AudioLimits(), what: str = "audio") -> None:
    """Raise `AudioError` unless `[..., T]` is non-empty, finite, not silent and within `limits`."""
    if wav.numel() == 0 or wav.shape[-1] == 0:
        raise AudioError(f"{what} is empty (0 samples): give a recording with speech in it")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{what} contains NaN or infinite samples: re-export it from its source")
    seconds = wav.shape[-1] / sample_rate
    if limits.min_seconds is not None and seconds < limits.min_seconds:
        raise AudioError(
            f"{what} is too short ({seconds:.2f} s < {limits.min_seconds:g} s): give at least "
            f"{limits.min_seconds:g} seconds of speech"
        )
    if limits.max_seconds is not None and seconds > limits.max_seconds:
        raise AudioError(
            f"{what} is too long ({seconds:.1f} s > {limits.max_seconds:g} s): cut it to at most "
            f"{limits.max_seconds:g} seconds or raise the limit"
        )
    if float(wav.abs().max()) < SILENCE_PEAK:
        raise AudioError(f"{what} is silent (peak below {SILENCE_PEAK:g}): give a recording with audible speech")


def load_audio(
    source: AudioSource,
    sample_rate: int | None = None,
    target_rate: int | None = None,
    mono: bool = True,
    normalize: bool = False,
    limits: AudioLimits | None = AudioLimits(),
) -> tuple[torch.Tensor, int]:
    """Load audio from a path, file bytes, or an array/tensor with its `sample_rate`.

    Returns `(wav, rate)`: `wav` is float32 `[T]` when `mono` (channels averaged) else `[C, T]`; `rate` is
    `target_rate` when given (resampled), else the source's rate. `limits=None` skips validation.
    """
    what = f"audio {_describe(source)}"
    if isinstance(source, (str, os.PathLike, bytes)):
        data, rate = read_audio_file(source)
        wav = torch.from_numpy(data.T.copy())
    else:
        if sample_rate is None:
            raise AudioError("an audio array was given without its sample rate: pass sample_rate=")
        wav, rate = _as_channels_first(source, what), int(sample_rate)
    if rate <= 0:
        raise AudioError(f"{what} has an invalid sample rate {rate}: give a positive rate")
    if mono:
        wav = to_mono(wav)
    if limits is not None:
        validate_audio(wav, rate, limits, what)
    if target_rate is not None and target_rate != rate:
        wav, rate = resample(wav, rate, target_rate), int(target_rate)
    if normalize:
        wav = peak_normalize(wav)
    return wav.contiguous(), rate


def save_audio(path: str | os.PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write `[T]` or `[C, T]` to `path` atomically (format from the extension); samples are clipped to [-1, 1]."""
    array = _as_channels_first(wav, "the waveform to save").clamp(-1.0, 1.0).t().numpy()
    final = Path(path)
    fmt = final.suffix.lstrip(".").upper() or "WAV"
    if fmt not in sf.available_formats():
        raise AudioError(f"cannot write '{final}': unknown audio extension, use .wav, .flac or .ogg")
    with atomic_path(final) as tmp:
        sf.write(tmp, array, int(sample_rate), subtype=subtype if fmt in ("WAV", "FLAC") else None, format=fmt)
    return final


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of an audio file, read from its header."""
    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"cannot read audio file '{path}': {' '.join(str(error).split())}") from None
    return info.frames / info.samplerate
