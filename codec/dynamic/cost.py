"""CodecSlime's segment cohesion cost, via prefix sums.

For one segment of length l: `(1/l) * sum_{i<j} ||x_i - x_j||^2 = sum_i ||x_i - mean||^2
= S2 - ||S1||^2 / l` with `S1 = sum x_i`, `S2 = sum ||x_i||^2`, so any segment's cost is O(D) from prefix sums.
The total over a segmentation is the squared error of merge-then-unmerge.

Precision: prefix sums are float64 and the sequence is first shifted by its first frame (the cost is
translation invariant), which keeps the cancellation in `S2 - ||S1||^2 / l` small. The shift is per item and
elementwise, so padding never changes a result.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._batch import as_batch

__all__ = ["segment_cost", "prefix_sums", "segment_costs_by_end"]


def prefix_sums(xb: Tensor) -> tuple[Tensor, Tensor]:
    """Float64 prefix sums of a batch.

    Args:
        xb: `[B, T, D]`.
    Returns:
        `(P1 [B, T+1, D], P2 [B, T+1])`: `P1[:, t] = sum_{k<t} (x_k - x_0)`, `P2[:, t] = sum_{k<t} ||x_k - x_0||^2`.
    """
    B, T, D = xb.shape
    xd = xb.double()
    if T:
        xd = xd - xd[:, :1]
    P1 = torch.zeros(B, T + 1, D, dtype=torch.float64, device=xb.device)
    P2 = torch.zeros(B, T + 1, dtype=torch.float64, device=xb.device)
    torch.cumsum(xd, dim=1, out=P1[:, 1:])
    torch.cumsum((xd * xd).sum(-1), dim=1, out=P2[:, 1:])
    return P1, P2


def segment_costs_by_end(xb: Tensor, lengths: Tensor, max_len: int) -> Tensor:
    """Cost of every candidate segment, indexed by its (exclusive) end frame, for the DP.

    Args:
        xb: `[B, T, D]` features; lengths: `[B]` real frames per item; max_len: L.
    Returns:
        `[B, T+1, L]` float64: entry `[b, t, k]` is the cost of the segment `[t - l, t)` with `l = L - k`
        (this order matches `Tensor.unfold` windows over the DP row); `inf` where `t - l < 0` or `t > lengths[b]`.
    """
    B, T, _ = xb.shape
    L = max_len
    P1, P2 = prefix_sums(xb)
    C = torch.full((B, T + 1, L), float("inf"), dtype=torch.float64, device=xb.device)
    for l in range(1, min(L, T) + 1):  # L small loop; each step is vectorised over the batch and time
        s1 = P1[:, l:] - P1[:, :-l]
        c = (P2[:, l:] - P2[:, :-l]) - (s1 * s1).sum(-1) / l
        # A single frame costs exactly 0 (the prefix-sum difference would leave rounding noise).
        C[:, l:, L - l] = c.clamp_min(0.0) if l > 1 else torch.zeros_like(c)
    beyond = torch.arange(T + 1, device=xb.device).unsqueeze(0) > lengths.unsqueeze(1)
    C.masked_fill_(beyond.unsqueeze(-1), float("inf"))
    return C


def segment_cost(x: Tensor, lengths: Tensor) -> Tensor:
    """Total CodecSlime cost of a segmentation (= squared error of replacing frames by their segment mean).

    Args:
        x: `[T, D]`, or `[B, T, D]` padded batch.
        lengths: `[G]` summing to T, or `[B, G]` zero-padded with row sums `<= T` (frames past a row's sum are
            padding and ignored).
    Returns:
        float64 scalar tensor, or `[B]` float64 for batched input.
    """
    xb, _, batched = as_batch(x, None)
    lengths = torch.as_tensor(lengths, device=x.device).long()
    lb = lengths.unsqueeze(0) if not batched else lengths
    if lb.dim() != 2 or lb.shape[0] != xb.shape[0]:
        raise ValueError(f"lengths shape {tuple(lengths.shape)} does not match x {tuple(x.shape)}")
    T = xb.shape[1]
    sums = lb.sum(1)
    if lb.numel() and (int(lb.min()) < 0 or int(sums.max()) > T):
        raise ValueError("segment lengths must be >= 0 and sum to at most T")
    if not batched and int(sums[0]) != T:
        raise ValueError(f"segment lengths sum to {int(sums[0])}, expected {T}")
    P1, P2 = prefix_sums(xb)
    ends = lb.cumsum(1)
    starts = ends - lb
    D = xb.shape[2]
    s1 = P1.gather(1, ends.unsqueeze(-1).expand(-1, -1, D)) - P1.gather(1, starts.unsqueeze(-1).expand(-1, -1, D))
    s2 = P2.gather(1, ends) - P2.gather(1, starts)
    per_seg = (s2 - (s1 * s1).sum(-1) / lb.clamp_min(1)).clamp_min(0.0)
    per_seg = per_seg.masked_fill(lb <= 1, 0.0)  # singletons and padding cost exactly 0
    total = per_seg.sum(1)
    return total if batched else total[0]
