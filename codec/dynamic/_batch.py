"""Small shared helpers for the dynamic-rate package: batch normalisation and packing of segment starts.

Everything in `codec.dynamic` accepts either one sequence `[T, ...]` or a padded batch `[B, T, ...]` with item
lengths `[B]`. These helpers turn both into the batched form so each algorithm is written once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def as_batch(x: Tensor, lengths: Tensor | None, feature_dims: int = 1) -> tuple[Tensor, Tensor, bool]:
    """Return `(xb [B, T, ...], lengths [B] long, was_batched)`.

    `feature_dims` is the number of trailing feature dimensions of one frame (1 for `[T, D]`).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == feature_dims + 1:
        if lengths is not None:
            raise ValueError("lengths is only meaningful for a batched [B, T, ...] input")
        xb = x.unsqueeze(0)
        return xb, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device), False
    if x.dim() != feature_dims + 2:
        raise ValueError(f"expected {feature_dims + 1} or {feature_dims + 2} dims, got shape {tuple(x.shape)}")
    B, T = x.shape[:2]
    if lengths is None:
        return x, torch.full((B,), T, dtype=torch.long, device=x.device), True
    lengths = torch.as_tensor(lengths, device=x.device).long().reshape(-1)
    if lengths.numel() != B:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {B}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [0, {T}]")
    return x, lengths, True


def valid_mask(lengths: Tensor, T: int) -> Tensor:
    """`[B, T]` bool, True on real (non-padding) frames."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def lengths_from_starts(starts: Tensor, valid: Tensor) -> Tensor:
    """Segment lengths from a segment-start mask.

    Args:
        starts: `[B, T]` bool, True where a segment begins (must be True at frame 0 of every non-empty item and
            False on padding).
        valid: `[B, T]` bool, True on real frames.
    Returns:
        `[B, Gmax]` long, the length of each segment in order, 0 on padding (each row sums to that item's length).
    """
    B, T = starts.shape
    counts = starts.sum(1)
    gmax = int(counts.max()) if B else 0
    out = torch.zeros(B, gmax, dtype=torch.long, device=starts.device)
    if gmax == 0:
        return out
    # Every frame belongs to the most recent start; padding frames add 0 so they never change a length.
    seg_id = (starts.long().cumsum(1) - 1).clamp_min(0)
    out.scatter_add_(1, seg_id, valid.long())
    return out


def unbatch(lengths_b: Tensor, was_batched: bool) -> Tensor:
    """Drop the batch dimension again for single-sequence callers (`[1, G]` -> `[G]`)."""
    return lengths_b if was_batched else lengths_b[0]


def check_max_len(max_len: int) -> int:
    if int(max_len) < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    return int(max_len)
