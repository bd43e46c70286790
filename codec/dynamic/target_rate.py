"""Target-rate knob shared by all schedulers: ask for an average frame rate (Hz) instead of a threshold.

Rate of one utterance = `G / seconds` with `seconds = T / base_rate` (T base frames at 12.5 Hz), so hitting a rate
means hitting `G* = frame_rate * T / base_rate` segments.

- threshold: tau per utterance by bisection. The segment count only changes when tau crosses one of the T-1
  neighbour similarities, so the search runs over the sorted similarities (exact, ~log2 T vectorised steps for the
  whole batch) and returns the midpoint between two neighbouring ones (robust to re-computation). Each extra join
  changes G by at most 1, so with distinct similarities every G in `[ceil(T/max_len), T]` is reachable and the
  result is within half a segment of `G*`.
- dp: `G = round(T / base_rate * frame_rate)` clamped to the feasible `[ceil(T / max_len), T]`.
- entropy: ratios `(r_f, r_m, r_c)` whose nominal rate is the target (`entropy_ratios_for_rate`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._batch import as_batch, check_max_len, valid_mask
from .dp import dp_segments
from .threshold import _starts_from_joins, adjacent_cosine, threshold_segments

__all__ = ["threshold_for_rate", "num_segments_for_rate", "segments_for_rate", "entropy_ratios_for_rate",
           "average_rate"]

_BELOW_ANY_COSINE = -1.0 - 1e-6


def _check_rate(frame_rate: float, base_rate: float) -> None:
    if not (frame_rate > 0 and base_rate > 0) or math.isinf(frame_rate):
        raise ValueError(f"frame_rate and base_rate must be positive, got {frame_rate}, {base_rate}")


def average_rate(lengths: Tensor, base_rate: float = 12.5) -> float | Tensor:
    """Tokens per second of a segmentation: `G * base_rate / T`.

    Args:
        lengths: `[G]` (returns a float) or `[B, G]` zero-padded (returns `[B]` float64; 0 for empty items).
    """
    lengths = torch.as_tensor(lengths).long()
    if lengths.dim() == 1:
        T = int(lengths.sum())
        return float((lengths > 0).sum()) * base_rate / T if T else 0.0
    G = (lengths > 0).sum(1).double()
    T = lengths.sum(1).double()
    return torch.where(T > 0, G * base_rate / T.clamp_min(1), torch.zeros_like(T))


def num_segments_for_rate(num_frames: int | Tensor, frame_rate: float, max_len: int = 8,
                          base_rate: float = 12.5) -> int | Tensor:
    """`round(duration * frame_rate)` clamped to the feasible `[ceil(T / max_len), T]` (0 for T = 0).

    Args:
        num_frames: T (int) or `[B]` tensor of frame counts at `base_rate`.
    Returns:
        int, or `[B]` long.
    """
    _check_rate(frame_rate, base_rate)
    L = check_max_len(max_len)
    T = torch.as_tensor(num_frames).long()
    # floor(x + 0.5): round half up, unlike Python's banker's rounding.
    G = torch.floor(T.double() / base_rate * frame_rate + 0.5).long()
    G = torch.minimum(torch.maximum(G, (T + L - 1) // L), T)
    return int(G) if not isinstance(num_frames, Tensor) else G


@torch.no_grad()  # scheduling decisions are discrete: no graph needed
def threshold_for_rate(x: Tensor, frame_rate: float, max_len: int = 8, base_rate: float = 12.5,
                       lengths: Tensor | None = None) -> float | Tensor:
    """Per-utterance threshold whose average rate is closest to `frame_rate`.

    Args:
        x: `[T, D]` or `[B, T, D]` padded features at `base_rate`; lengths: `[B]` real frames (batched only).
    Returns:
        tau (float) or `[B]` float64 to pass to `threshold_segments`. 1.0 (no merging) when the target is at or
        above the base rate; when two candidates are equally close, the higher rate wins.
    """
    _check_rate(frame_rate, base_rate)
    L = check_max_len(max_len)
    xb, lens, batched = as_batch(x, lengths)
    B, T = xb.shape[:2]
    dev = xb.device
    if T < 2:
        taus = torch.ones(B, dtype=torch.float64, device=dev)
        return taus if batched else float(taus[0])
    valid = valid_mask(lens, T)
    s = adjacent_cosine(xb)
    desc = torch.where(valid[:, 1:], s, torch.full_like(s, _BELOW_ANY_COSINE)).sort(dim=1, descending=True).values
    desc = torch.cat([desc, torch.full((B, 1), _BELOW_ANY_COSINE, dtype=torch.float64, device=dev)], dim=1)
    n_pairs = (lens - 1).clamp_min(0)
    target = frame_rate * lens.double() / base_rate

    def tau_of(k: Tensor) -> Tensor:
        # k joins: midway between the k-th and (k+1)-th largest similarity; k = 0 is "no merging".
        upper = desc.gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        lower = desc.gather(1, k.unsqueeze(1)).squeeze(1)
        return torch.where(k == 0, torch.ones_like(upper), (upper + lower) / 2)

    def count(k: Tensor) -> Tensor:
        return _starts_from_joins(s > tau_of(k).unsqueeze(1), valid, L).sum(1)

    # G(k) is non-increasing in k: find the smallest k with G(k) <= target (or k = n_pairs if none).
    lo = torch.zeros(B, dtype=torch.long, device=dev)
    hi = n_pairs.clone()
    while bool((lo < hi).any()):
        mid = (lo + hi) // 2
        ok = count(mid).double() <= target
        open_ = lo < hi
        hi = torch.where(open_ & ok, mid, hi)
        lo = torch.where(open_ & ~ok, mid + 1, lo)
    prev = (lo - 1).clamp_min(0)
    err_lo = (count(lo).double() - target).abs()
    err_prev = (count(prev).double() - target).abs()
    best = torch.where(err_prev <= err_lo, prev, lo)
    taus = tau_of(best)
    return taus if batched else float(taus[0])


def entropy_ratios_for_rate(frame_rate: float, base_rate: float = 12.5) -> tuple[float, float, float]:
    """TFC ratios `(r_f, r_m, r_c)` with nominal rate `base * (r_f + r_m/2 + r_c/4) = frame_rate`.

    Down to 3/8 of the base rate, medium and coarse share the merged time equally (the paper's 0.3/0.3 mix);
    below that, fine frames are gone and coarse replaces medium, down to a quarter of the base rate.
    """
    _check_rate(frame_rate, base_rate)
    rho = frame_rate / base_rate
    if rho >= 1.0:
        return 1.0, 0.0, 0.0
    if rho >= 3 / 8:
        r_f = (rho - 3 / 8) / (5 / 8)
        return r_f, (1 - r_f) / 2, (1 - r_f) / 2
    if rho >= 1 / 4 - 1e-12:
        r_c = min(1.0, 2 - 4 * rho)
        return 0.0, 1 - r_c, r_c
    raise ValueError(f"entropy scheduling reaches at most 4x merging: {frame_rate} Hz < {base_rate / 4} Hz")


def segments_for_rate(x: Tensor, frame_rate: float, scheduler: str = "threshold", max_len: int = 8,
                      base_rate: float = 12.5, lengths: Tensor | None = None, pruned: bool = True) -> Tensor:
    """Segment lengths at a target average rate, with the threshold or dp scheduler.

    Args:
        x: `[T, D]` or `[B, T, D]` padded features; lengths: `[B]` (batched only).
        scheduler: "threshold" (per-utterance tau by bisection) or "dp" (exact G = round(duration * rate)).
            Entropy scheduling works on the waveform: use `entropy_segments(wav, sr, entropy_ratios_for_rate(hz))`.
    Returns:
        `[G]` or `[B, Gmax]` zero-padded segment lengths.
    """
    if scheduler == "threshold":
        tau = threshold_for_rate(x, frame_rate, max_len=max_len, base_rate=base_rate, lengths=lengths)
        return threshold_segments(x, tau, max_len=max_len, lengths=lengths)
    if scheduler == "dp":
        _, lens, _ = as_batch(x, lengths)
        G = num_segments_for_rate(lens, frame_rate, max_len=max_len, base_rate=base_rate)
        return dp_segments(x, G, max_len=max_len, pruned=pruned, lengths=lengths)
    raise ValueError(f"unknown scheduler {scheduler!r}: expected 'threshold' or 'dp'")
