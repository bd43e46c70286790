"""The codec's time grid: 16 kHz audio, 12.5 Hz base frames of 80 ms (1280 samples).

Every component that counts base frames (ASR features, the acoustic encoder, the schedulers, the NAR's
4-mel-frames-per-base-frame) uses these definitions, so their sequences always have the same length.
"""
from __future__ import annotations

import torch

SAMPLE_RATE = 16000
BASE_FRAME_RATE = 12.5
HOP_SAMPLES = 1280  # SAMPLE_RATE / BASE_FRAME_RATE


def num_base_frames(num_samples: int | torch.Tensor) -> int | torch.Tensor:
    """Number of 12.5 Hz frames covering `num_samples` samples: ceil(num_samples / 1280)."""
    if isinstance(num_samples, torch.Tensor):
        return torch.div(num_samples + HOP_SAMPLES - 1, HOP_SAMPLES, rounding_mode="floor")
    return -(-int(num_samples) // HOP_SAMPLES)


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """`[B]` lengths to a `[B, max_len]` bool mask, True on valid positions."""
    max_len = int(lengths.max()) if max_len is None else int(max_len)
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pool_frames(x: torch.Tensor, lengths: torch.Tensor, src_rate: float, num_out: torch.Tensor) -> torch.Tensor:
    """Resample a padded feature sequence `[B, T, D]` at `src_rate` Hz to the 12.5 Hz grid `[B, max(num_out), D]`.

    Each output frame k averages the valid input frames whose centres fall in [k*80 ms, (k+1)*80 ms); an
    output frame with none (a source slower than 12.5 Hz) takes the nearest valid frame. Padding frames never
    contribute, so a padded batch gives what each item gives alone. Frames past `num_out[b]` are zero.
    """
    batch, steps, dim = x.shape
    t_out = int(num_out.max())
    centres = (torch.arange(steps, device=x.device, dtype=torch.float64) + 0.5) / src_rate
    bucket = torch.floor(centres * BASE_FRAME_RATE).long().clamp(max=t_out - 1)  # [T]
    valid = length_mask(lengths, steps) & (bucket[None, :] < num_out[:, None])  # [B, T]
    weights = valid.to(x.dtype)
    sums = x.new_zeros(batch, t_out, dim).index_add_(1, bucket, x * weights[..., None])
    counts = x.new_zeros(batch, t_out).index_add_(1, bucket, weights)
    pooled = sums / counts.clamp(min=1)[..., None]
    # Empty buckets (source slower than 12.5 Hz, or past its end): nearest valid source frame.
    out_centres = (torch.arange(t_out, device=x.device, dtype=torch.float64) + 0.5) / BASE_FRAME_RATE
    nearest = torch.round(out_centres * src_rate - 0.5).long()  # [T_out]
    nearest = torch.minimum(nearest[None, :].expand(batch, -1), (lengths - 1).clamp(min=0)[:, None])
    fallback = torch.gather(x, 1, nearest[..., None].expand(-1, -1, dim))
    out = torch.where((counts > 0)[..., None], pooled, fallback)
    return out * length_mask(num_out, t_out)[..., None].to(x.dtype)
