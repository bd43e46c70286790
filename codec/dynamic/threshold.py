"""FlexiCodec threshold scheduling: merge adjacent frames whose cosine similarity exceeds a threshold.

Rule: `s_t = cos(x_t, x_{t+1})`; frames t and t+1 share a segment iff `s_t > tau`; a run longer than `max_len`
is cut into chunks of `max_len` from its start. `tau = 1.0` never merges (12.5 Hz). Lowering tau only adds joins,
and cutting runs is subadditive (`ceil((a+b)/M) <= ceil(a/M) + ceil(b/M)`), so the number of segments never rises
as tau falls. Fully vectorised with `cumsum` / `cummax` / `scatter_add` over the whole padded batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._batch import as_batch, check_max_len, lengths_from_starts, unbatch, valid_mask

__all__ = ["adjacent_cosine", "threshold_segments"]

_EPS = 1e-8


def adjacent_cosine(x: Tensor) -> Tensor:
    """Cosine similarity of neighbouring frames, computed in float64 so thresholds compare exactly.

    Args:
        x: `[B, T, D]` (or `[T, D]`).
    Returns:
        `[B, T-1]` (or `[T-1]`) float64 in `[-1, 1]`; 0 where a frame is all zeros.
    """
    a, b = x[..., :-1, :].double(), x[..., 1:, :].double()
    num = (a * b).sum(-1)
    den = (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(_EPS)
    return (num / den).clamp(-1.0, 1.0)


def _starts_from_joins(join: Tensor, valid: Tensor, max_len: int) -> Tensor:
    """Segment starts `[B, T]` from joins `[B, T-1]` (True: frames t and t+1 in one run) and the max_len cut."""
    B, T = valid.shape
    run_start = torch.ones(B, T, dtype=torch.bool, device=valid.device)
    if T > 1:
        run_start[:, 1:] = ~(join & valid[:, 1:])
    idx = torch.arange(T, device=valid.device).expand(B, T)
    # Index of the first frame of the current run, carried forward by a running max.
    first = torch.cummax(torch.where(run_start, idx, torch.zeros_like(idx)), dim=1).values
    return ((idx - first) % max_len == 0) & valid


def _as_tau(tau: float | Tensor, B: int, device: torch.device) -> Tensor:
    tau_t = torch.as_tensor(tau, dtype=torch.float64, device=device).reshape(-1)
    if tau_t.numel() == 1:
        tau_t = tau_t.expand(B)
    if tau_t.numel() != B:
        raise ValueError(f"tau has {tau_t.numel()} values for a batch of {B}")
    return tau_t


@torch.no_grad()  # scheduling decisions are discrete: no graph needed
def threshold_segments(x: Tensor, tau: float | Tensor, max_len: int = 8, lengths: Tensor | None = None) -> Tensor:
    """Segment lengths from the FlexiCodec similarity threshold.

    Args:
        x: `[T, D]` features of one utterance at the base rate, or `[B, T, D]` padded batch.
        tau: threshold (float, or `[B]` tensor: one per item); merge iff `cos > tau`.
        max_len: longest segment (runs are cut into chunks of this many frames).
        lengths: `[B]` number of real frames per item (batched only; default: all `T`).
    Returns:
        `[G]` long for `[T, D]` input; `[B, Gmax]` long zero-padded for batched input (row b sums to `lengths[b]`).
    """
    max_len = check_max_len(max_len)
    xb, lens, batched = as_batch(x, lengths)
    B, T = xb.shape[:2]
    valid = valid_mask(lens, T)
    tau_t = _as_tau(tau, B, xb.device)
    join = adjacent_cosine(xb) > tau_t.unsqueeze(1) if T > 1 else valid.new_zeros(B, 0)
    starts = _starts_from_joins(join, valid, max_len)
    return unbatch(lengths_from_starts(starts, valid), batched)
