"""Reconstruction metrics of a decoded waveform against its original: small pure functions.

Every function takes the reference and the degraded signal as 1-D arrays (NumPy or torch, any float dtype) at
`sample_rate` and compares their common length (codec output has the input's length; a sample or two of slack is
cut, never padded). Used by `flexitts eval codec` (`flexitts.evaluation.codec_eval`) and `flexitts bench codec`
(`flexitts.benchmarks.codec`), so both report the same numbers.

- `stoi`: short-time objective intelligibility (`pystoi`, classic unless `extended`), about -0.5..1; 1 for
  identical signals.
- `pesq_wb`: wideband PESQ (`pesq` package, ITU-T P.862.2) in MOS-LQO, about 1.04..4.64; 4.64 for identical
  signals. None where PESQ finds no speech (silence, under a quarter second).
- `mel_cepstral_distortion`: MCD in dB over frame-aligned mel cepstra c1..c12 (13 cepstra, c0 left out),
  `10 * sqrt(2) / ln(10) * mean_frames sqrt(sum_d (c_d - c'_d)^2)`; 0 for identical signals.
- `log_mel_distance`: mean |ln mel(ref) - ln mel(deg)| over an 80-bin magnitude mel spectrogram.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from flexitts.errors import DependencyError

# The log-mel distance's spectrogram (the codec benchmark's since its first report).
MEL = dict(n_fft=1024, hop_length=256, n_mels=80, floor=1e-5)
# Mel cepstra for MCD: 25 ms windows every 10 ms at 16 kHz, 40 mel bands, natural log of magnitudes, cosine
# transform scaled as a cepstrum (see `mel_cepstra`) -> 13 cepstra c0..c12; c0 (overall level) is excluded.
MCD = dict(n_fft=512, win_length=400, hop_length=160, n_mels=40, n_cepstra=13, floor=1e-5)
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)  # 6.1415...: natural-log cepstra -> dB
PESQ_MAX_WB = 4.643888473510742  # P.862.2 mapping of the best raw score (identical signals)


def _pair(ref: Any, deg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 `[n]` arrays of their common length (the degraded one clipped to [-1, 1])."""
    a = torch.as_tensor(ref).detach().reshape(-1).double().cpu().numpy()
    b = torch.as_tensor(deg).detach().reshape(-1).double().cpu().numpy()
    n = min(a.size, b.size)
    if n == 0:
        raise ValueError("cannot compare an empty signal")
    return a[:n], np.clip(b[:n], -1.0, 1.0)


def stoi(ref: Any, deg: Any, sample_rate: int = 16000, extended: bool = False) -> float:
    """STOI of `deg` against `ref` (`pystoi`; resamples to 10 kHz internally)."""
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        raise DependencyError("pystoi is not installed: run `make setup` or `pip install flexitts[eval]`") from None
    a, b = _pair(ref, deg)
    return float(_stoi(a, b, sample_rate, extended=extended))


def pesq_available() -> bool:
    try:
        import pesq  # noqa: F401
    except ImportError:
        return False
    return True


def pesq_wb(ref: Any, deg: Any, sample_rate: int = 16000) -> float | None:
    """Wideband PESQ (MOS-LQO) of `deg` against `ref`; signals at other rates than 16 kHz are resampled.

    Returns None where PESQ cannot score the pair (no speech found, too short); raises `DependencyError` when
    the `pesq` package is missing.
    """
    try:
        from pesq import pesq as _pesq
    except ImportError:
        raise DependencyError("pesq is not installed: run `make setup` or `pip install flexitts[eval]`") from None
    a, b = _pair(ref, deg)
    if sample_rate != 16000:
        from flexitts.audio import resample

        a = resample(torch.from_numpy(a).float(), sample_rate, 16000).double().numpy()
        b = resample(torch.from_numpy(b).float(), sample_rate, 16000).double().numpy()
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # pesq normalises by the peak: silence divides by 0
            return float(_pesq(16000, a, b, "wb"))
    except Exception:  # pesq raises NoUtterancesError / BufferTooShortError on silent or too-short input
        return None


@lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win_length,
                                                hop_length=hop_length, n_mels=n_mels, power=1.0)


def _log_mel(x: np.ndarray, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int,
             floor: float) -> torch.Tensor:
    """Natural log of a magnitude mel spectrogram `[n_mels, frames]`, floored at `floor`."""
    transform = _mel_transform(sample_rate, n_fft, win_length, hop_length, n_mels)
    with torch.no_grad():
        return transform(torch.from_numpy(x).float()).clamp(min=floor).log()


def log_mel_distance(ref: Any, deg: Any, sample_rate: int = 16000, n_fft: int = MEL["n_fft"],
                     hop_length: int = MEL["hop_length"], n_mels: int = MEL["n_mels"],
                     floor: float = MEL["floor"]) -> float:
    """Mean absolute difference of the natural-log magnitude mel spectrograms (nats); 0 for identical signals."""
    a, b = _pair(ref, deg)
    mel_a = _log_mel(a, sample_rate, n_fft, n_fft, hop_length, n_mels, floor)
    mel_b = _log_mel(b, sample_rate, n_fft, n_fft, hop_length, n_mels, floor)
    return float((mel_a - mel_b).abs().mean())


def mel_cepstra(wav: Any, sample_rate: int = 16000, n_cepstra: int = MCD["n_cepstra"]) -> torch.Tensor:
    """Mel cepstra `[frames, n_cepstra]` (c0 first) with the `MCD` analysis settings.

    The log-magnitude mel spectrum of each frame, sampled at K bands, is read as the mel-warped log spectrum
    `ln|H(w)| = c0 + 2 sum_m c_m cos(m w)` at `w_k = pi (k + 1/2) / K`, so `c_m = (1/K) sum_k ln|M_k| cos(m w_k)`:
    the scale on which the MCD constant converts to dB (an orthonormal DCT, as in MFCCs, would be sqrt(2K)
    times larger).
    """
    x = torch.as_tensor(wav).detach().reshape(-1).double().cpu().numpy()
    log_mel = _log_mel(x, sample_rate, MCD["n_fft"], MCD["win_length"], MCD["hop_length"], MCD["n_mels"],
                       MCD["floor"]).double()  # [K, frames]
    bands = log_mel.shape[0]
    k = torch.arange(bands, dtype=torch.float64) + 0.5
    m = torch.arange(n_cepstra, dtype=torch.float64)
    basis = torch.cos(torch.pi * k[:, None] * m[None, :] / bands) / bands  # [K, n_cepstra]
    return log_mel.transpose(0, 1) @ basis


def mel_cepstral_distortion(ref: Any, deg: Any, sample_rate: int = 16000, n_cepstra: int = MCD["n_cepstra"]) -> float:
    """MCD in dB: `10 sqrt(2) / ln 10 * mean over frames of sqrt(sum_{d>=1} (c_d - c'_d)^2)`, c0 excluded.

    The frames are aligned one to one (the codec keeps the length; no dynamic time warping).
    """
    a, b = _pair(ref, deg)
    ca = mel_cepstra(a, sample_rate, n_cepstra)[:, 1:]
    cb = mel_cepstra(b, sample_rate, n_cepstra)[:, 1:]
    per_frame = (ca - cb).double().pow(2).sum(dim=1).sqrt()
    return float(MCD_CONSTANT * per_frame.mean())

