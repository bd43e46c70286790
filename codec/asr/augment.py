"""Speaker augmentation for training the CTC recogniser on few voices (active in training mode only).

With three training voices the recogniser learns their timbre along with their phones (train PER about 0,
held-out voice 27-36%). Two cheap perturbations move each batch towards other voices:
- speed perturbation (Ko et al. 2015): resample the batch by one factor in [1 - s, 1 + s], which shifts pitch,
  formants and tempo together;
- vocal tract length perturbation (Jaitly & Hinton 2013): warp each item's mel frequency axis by its own factor
  in [1 - v, 1 + v] (linear interpolation between neighbouring bins), which shifts formants alone.
"""
from __future__ import annotations

import torch


def speed_perturb(wav: torch.Tensor, lengths: torch.Tensor, factor: float,
                  sample_rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample `wav [B, S]` by `factor` (> 1: longer, lower), one factor for the batch so it stays one call.

    The new rate is rounded to a multiple of 100 Hz, which keeps the polyphase kernel small; returns the
    resampled `[B, S']` and `[B]` lengths.
    """
    import torchaudio.functional as AF

    new_rate = int(round(sample_rate * factor / 100.0)) * 100
    if new_rate == sample_rate:
        return wav, lengths
    out = AF.resample(wav, sample_rate, new_rate)
    new_lengths = torch.ceil(lengths.to(torch.float64) * new_rate / sample_rate).long().clamp(max=out.shape[-1])
    return out, new_lengths


def warp_mel(feats: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Warp the frequency axis of `feats [B, T, M]` by `alpha [B]`: output bin k reads input bin `k / alpha`
    (alpha > 1 stretches the spectrum upwards, as a shorter vocal tract does), linearly interpolated and
    clamped at the top bin."""
    bins = feats.shape[-1]
    pos = (torch.arange(bins, device=feats.device, dtype=feats.dtype)[None, :] / alpha[:, None].to(feats.dtype))
    pos = pos.clamp(0, bins - 1)  # [B, M]
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=bins - 1)
    frac = (pos - lo.to(pos.dtype))[:, None, :]
    index_lo = lo[:, None, :].expand(-1, feats.shape[1], -1)
    index_hi = hi[:, None, :].expand(-1, feats.shape[1], -1)
    return feats.gather(2, index_lo) * (1 - frac) + feats.gather(2, index_hi) * frac
