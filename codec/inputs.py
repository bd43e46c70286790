"""Turn what a caller hands to `FlexiCodec.encode` into a padded 16 kHz mono batch `[B, S]` with lengths `[B]`.

Accepted: a 1-D array/tensor (one mono utterance), a 2-D one without `wav_lengths` (one utterance with
channels on the shorter axis, mixed to mono: `[C, S]` as torchaudio gives or `[S, C]` as soundfile gives), or
a padded batch `[B, S]` with `wav_lengths`. Integer PCM is scaled to [-1, 1). Any sample rate is resampled
with torchaudio. Bad input raises `AudioError` with a one-line message.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from codec.common.errors import AudioError
from codec.framing import SAMPLE_RATE, length_mask


def _as_float_tensor(wav: object) -> torch.Tensor:
    if isinstance(wav, (str, os.PathLike)):
        raise AudioError(f"'{os.fspath(wav)}' is a path: FlexiCodec.encode takes samples; read the file first "
                         "(flexitts.audio does) and pass the array with its sample rate")
    if isinstance(wav, np.ndarray):
        if wav.dtype == np.bool_ or not (np.issubdtype(wav.dtype, np.number)):
            raise AudioError(f"audio must be a numeric array, got dtype {wav.dtype}")
        if np.issubdtype(wav.dtype, np.integer):
            info = np.iinfo(wav.dtype)
            scale = float(max(-info.min, info.max + 1))
            wav = wav.astype(np.float64) / scale if info.min < 0 else (wav.astype(np.float64) - scale / 2) / (scale / 2)
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"audio must be a NumPy array or a torch tensor, got {type(wav).__name__}")
    if wav.dtype == torch.bool or wav.is_complex():
        raise AudioError(f"audio must be real-valued samples, got {wav.dtype}")
    if not wav.dtype.is_floating_point:
        info = torch.iinfo(wav.dtype)
        wav = wav.double() / float(max(-info.min, info.max + 1))
    return wav.float()


def prepare_waveforms(wav: object, sample_rate: int | None, wav_lengths: object = None,
                      target_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(wav [B, S] float32 at target_rate, zero past each length; lengths [B] long)`."""
    if sample_rate is None:
        sample_rate = target_rate
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or int(sample_rate) <= 0:
        raise AudioError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    sample_rate = int(sample_rate)
    x = _as_float_tensor(wav)
    if wav_lengths is not None:
        if x.dim() != 2:
            raise AudioError(f"a batch with wav_lengths must be [B, S], got shape {tuple(x.shape)}")
        lengths = torch.as_tensor(np.asarray(wav_lengths) if not isinstance(wav_lengths, torch.Tensor) else wav_lengths)
        lengths = lengths.reshape(-1).long().to(x.device)
        if lengths.numel() != x.shape[0] or (lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1])):
            raise AudioError(f"wav_lengths must give 1..{x.shape[1]} samples for each of the {x.shape[0]} items")
    elif x.dim() == 1:
        x = x[None]
        lengths = torch.tensor([x.shape[1]], dtype=torch.long, device=x.device)
    elif x.dim() == 2:
        x = x.mean(dim=0 if x.shape[0] <= x.shape[1] else 1)[None]  # channels on the shorter axis
        lengths = torch.tensor([x.shape[1]], dtype=torch.long, device=x.device)
    else:
        raise AudioError(f"audio must be 1-D, 2-D (channels) or a [B, S] batch with wav_lengths, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise AudioError("audio is empty")
    if not bool(torch.isfinite(x).all()):
        raise AudioError("audio contains NaN or infinite samples")
    x = x * length_mask(lengths, x.shape[1]).to(x.dtype)
    if sample_rate != target_rate:
        import torchaudio

        x = torchaudio.functional.resample(x, sample_rate, target_rate)
        # torchaudio's output length: ceil(n * target / source), per item in integer arithmetic.
        lengths = torch.div(lengths * target_rate + sample_rate - 1, sample_rate, rounding_mode="floor")
        lengths = lengths.clamp(max=x.shape[1])
        x = x * length_mask(lengths, x.shape[1]).to(x.dtype)
    return x.contiguous(), lengths
