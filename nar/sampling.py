"""ODE sampling helpers for the flow-matching model: time grids, classifier-free guidance with rescaling,
per-item noise and padded-sequence plumbing. All batched; padding never changes an item's values.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from codec.framing import length_mask


def time_grid(steps: int, sway: float | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """`[steps + 1]` increasing times from 0 to 1 for the Euler solver.

    `sway` (F5-TTS sway sampling, `s` in [-1, 1]): `t' = t + s * (cos(pi t / 2) - 1 + t)`. Negative `s` puts more
    steps at small t (the noisy end, where the flow's coarse structure is decided); None or 0: uniform.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    t = torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=torch.float64)
    if sway:
        t = t + sway * (torch.cos(math.pi / 2 * t) - 1 + t)
    return t.float()


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-item standard deviation of `[B, T, M]` over the valid frames of a `[B, T]` mask -> `[B]`."""
    w = mask[..., None].to(x.dtype)
    count = (w.sum(dim=(1, 2)) * x.shape[-1]).clamp(min=1.0)
    mean = (x * w).sum(dim=(1, 2)) / count
    var = (((x - mean[:, None, None]) * w) ** 2).sum(dim=(1, 2)) / count
    return var.sqrt()


def guided_velocity(v_cond: torch.Tensor, v_uncond: torch.Tensor | None, mask: torch.Tensor, cfg: float,
                    rescale: float, v_no_phones: torch.Tensor | None = None, phone_cfg: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance with rescaling (Lin et al. 2023), per item.

    `v = v_c + cfg (v_c - v_u) + phone_cfg (v_c - v_np)`, where `v_np` is the velocity with the codes but without
    the phones (a second guidance direction, as compositional guidance does for two conditions; either term is
    skipped when its tensor is None); `v_r = v * std(v_c) / std(v)` (std over the item's valid frames); result
    `rescale * v_r + (1 - rescale) * v`. All tensors `[B, T, M]`, mask `[B, T]`.
    """
    v = v_cond
    if v_uncond is not None:
        v = v + cfg * (v_cond - v_uncond)
    if v_no_phones is not None:
        v = v + phone_cfg * (v_cond - v_no_phones)
    if rescale == 0:
        return v
    ratio = masked_std(v_cond, mask) / masked_std(v, mask).clamp(min=1e-8)
    return rescale * v * ratio[:, None, None] + (1 - rescale) * v


def item_noise(lengths: torch.Tensor, dim: int, total: int, seed: int | Sequence[int] | None,
               device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`[B, total, dim]` standard normal noise, item `b` drawn alone (`[lengths[b], dim]`) and zero after.

    `seed`: one int for every item (an item's noise then depends only on its own length, never on the batch),
    a sequence of one seed per item, or None (torch's global generator, still drawn item by item).
    """
    batch = lengths.shape[0]
    if seed is not None and not isinstance(seed, int):
        seeds = [int(s) for s in seed]
        if len(seeds) != batch:
            raise ValueError(f"{len(seeds)} seeds for a batch of {batch}")
    else:
        seeds = [seed] * batch  # type: ignore[list-item]
    out = torch.zeros(batch, total, dim, dtype=torch.float32)
    for b, n in enumerate(lengths.tolist()):  # a loop over items (not frames): each item its own stream
        gen = torch.Generator().manual_seed(seeds[b]) if seeds[b] is not None else None
        out[b, :n] = torch.randn(n, dim, generator=gen)
    return out.to(device, dtype)


def concat_padded(a: torch.Tensor, a_len: torch.Tensor, b: torch.Tensor, b_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item, `a[i, :a_len[i]]` followed by `b[i, :b_len[i]]`; zero padded.

    Args: `a [B, Ta, ...]`, `b [B, Tb, ...]` (same trailing shape and dtype), lengths `[B]`.
    Returns: `[B, max(a_len + b_len), ...]` and the lengths `[B]`.
    """
    total = a_len + b_len
    steps = int(total.max()) if total.numel() else 0
    pos = torch.arange(steps, device=a.device)[None, :].expand(a.shape[0], -1)  # [B, T]
    from_a = pos < a_len[:, None]
    ia = pos.clamp(max=max(a.shape[1] - 1, 0))
    ib = (pos - a_len[:, None]).clamp(min=0, max=max(b.shape[1] - 1, 0))
    trail = (1,) * (a.dim() - 2)
    ga = torch.gather(a, 1, ia.view(ia.shape + trail).expand((-1, -1) + tuple(a.shape[2:]))) if a.shape[1] else None
    gb = torch.gather(b, 1, ib.view(ib.shape + trail).expand((-1, -1) + tuple(b.shape[2:]))) if b.shape[1] else None
    if ga is None:
        out = gb
    elif gb is None:
        out = ga
    else:
        out = torch.where(from_a.view(from_a.shape + trail), ga, gb)
    assert out is not None
    valid = length_mask(total, steps).view((a.shape[0], steps) + trail)
    return out * valid.to(out.dtype), total


def slice_padded(x: torch.Tensor, start: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per item, `x[i, start[i] : start[i] + lengths[i]]` -> `[B, max(lengths), ...]` zero padded."""
    steps = int(lengths.max()) if lengths.numel() else 0
    pos = torch.arange(steps, device=x.device)[None, :] + start[:, None]
    pos = pos.clamp(max=x.shape[1] - 1)
    trail = (1,) * (x.dim() - 2)
    out = torch.gather(x, 1, pos.view(pos.shape + trail).expand((-1, -1) + tuple(x.shape[2:])))
    return out * length_mask(lengths, steps).view((x.shape[0], steps) + trail).to(out.dtype)
