"""Reference (prompt) audio for zero-shot synthesis: load any format, trim silence, clip to a usable length.

The clip ends at the quietest 80 ms frame near the limit so that a word is not cut in half, and it keeps
whole 12.5 Hz frames (multiples of 1280 samples at 16 kHz), so the codec's tokens, the NAR's mel frames and
the audio cover exactly the same time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from codec.framing import HOP_SAMPLES, SAMPLE_RATE
from flexitts.audio import REFERENCE_LIMITS, load_audio

TRIM_TOP_DB = 40.0  # frames this far below the loudest one count as silence at the edges
TRIM_MARGIN_SECONDS = 0.08  # kept around the speech when trimming
DEFAULT_MAX_REFERENCE_SECONDS = 10.0


@dataclass
class Reference:
    """A prepared reference voice at 16 kHz.

    Attributes:
        wav: `[S]` float32, S a multiple of 1280 (whole 80 ms frames).
        clipped: True when the (trimmed) recording was longer than the limit and was cut.
        key: SHA-256 of the samples: caches of the reference's encoding use it.
    """

    wav: torch.Tensor
    clipped: bool
    key: str

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / SAMPLE_RATE


def frame_energy_db(wav: torch.Tensor, frame: int) -> torch.Tensor:
    """`[S]` -> `[ceil(S / frame)]` RMS level in dB of consecutive frames (zero-padded at the end)."""
    frames = torch.nn.functional.pad(wav, (0, (-wav.shape[-1]) % frame)).view(-1, frame)
    return 10 * torch.log10(frames.pow(2).mean(dim=1).clamp(min=1e-12))


def trim_silence(wav: torch.Tensor, top_db: float = TRIM_TOP_DB, margin: float = TRIM_MARGIN_SECONDS,
                 sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Drop leading and trailing audio quieter than `top_db` below the loudest 20 ms frame (`[S]` -> `[S']`)."""
    frame = max(1, sample_rate // 50)
    level = frame_energy_db(wav, frame)
    loud = torch.nonzero(level > level.max() - top_db).flatten()
    if loud.numel() == 0:
        return wav
    pad = int(margin * sample_rate)
    start = max(0, int(loud[0]) * frame - pad)
    stop = min(wav.shape[-1], (int(loud[-1]) + 1) * frame + pad)
    return wav[start:stop]


def clip_to_frames(wav: torch.Tensor, max_seconds: float) -> tuple[torch.Tensor, bool]:
    """Cut `[S]` to at most `max_seconds` of whole 80 ms frames, ending at the quietest frame of the last
    second before the limit (a pause, where possible); shorter audio is padded with zeros to a whole frame."""
    frames = -(-wav.shape[-1] // HOP_SAMPLES)
    limit = int(max_seconds * SAMPLE_RATE) // HOP_SAMPLES
    if frames <= limit:
        return torch.nn.functional.pad(wav, (0, frames * HOP_SAMPLES - wav.shape[-1])), False
    level = frame_energy_db(wav[: limit * HOP_SAMPLES], HOP_SAMPLES)
    window = max(1, int(SAMPLE_RATE / HOP_SAMPLES))  # search the last second
    end = limit - window + int(torch.argmin(level[limit - window :])) + 1
    return wav[: end * HOP_SAMPLES], True


def prepare_reference(source: Any, sample_rate: int | None = None,
                      max_seconds: float = DEFAULT_MAX_REFERENCE_SECONDS) -> Reference:
    """Load (`path`, bytes, array/tensor with `sample_rate`), convert to 16 kHz mono, trim, clip.

    Raises `AudioError` (one line) for missing, corrupt, silent, too short or absurdly long input.
    """
    wav, _ = load_audio(source, sample_rate=sample_rate, target_rate=SAMPLE_RATE, limits=REFERENCE_LIMITS_LOADED)
    wav = trim_silence(wav)
    wav, clipped = clip_to_frames(wav, max_seconds)
    key = hashlib.sha256(wav.numpy().tobytes()).hexdigest()
    return Reference(wav=wav.contiguous(), clipped=clipped, key=key)


# A long recording is clipped rather than refused; the loader still refuses what cannot be a voice sample
# (silence, under 0.3 s, or over 10 minutes, which is more likely a wrong file than a reference).
REFERENCE_LIMITS_LOADED = type(REFERENCE_LIMITS)(min_seconds=REFERENCE_LIMITS.min_seconds, max_seconds=600.0)
