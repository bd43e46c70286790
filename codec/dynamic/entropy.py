"""TFC entropy-based variable frame rate (Zhang et al., "Unlocking Temporal Flexibility", eqs. 2-5).

Temporal entropy of a waveform window W: each sample `x[t]` (clamped to [-1, 1]) has a Gaussian affinity
`p_{t,i} = exp(-(x[t] - u_i)^2 / (2 sigma^2))` to N uniform bins `u_i = -1 + 2i/(N-1)`; the affinities are averaged
over the window, normalised `p_i / (sum_j p_j + eps)`, and `H(W) = -sum_i p_i log p_i`.

Granularities (base frame = one 12.5 Hz frame = `hop` samples, 80 ms = 1280 samples at 16 kHz):
fine windows are 1 frame at stride 1, medium 2 frames at stride 2, coarse 4 frames at stride 4 (the paper's
receptive fields `W`, `W + s`, `W + 3s` with `W = s = hop`).

Allocation (eq. 5): the lowest-entropy coarse windows covering a fraction `r_c` of the frames become 4-frame
segments; among medium windows not covered by them, the lowest-entropy ones covering `r_m` of the frames become
2-frame segments; all other frames stay single. A 4-frame segment therefore starts at a multiple of 4 and a
2-frame segment at a multiple of 2.

Choices the paper leaves open (documented here):
- The paper's quantile thresholds become exact counts, `k_c = round(r_c * T / 4)` coarse and
  `k_m = round(r_m * T / 2)` medium windows, picked by stable rank (ties by position). This keeps the ratio exact
  when entropies tie (digital silence), where `h <= quantile` would select every tied window.
- Only complete windows are eligible (a trailing partial window cannot hold a 4- or 2-frame segment); counts are
  capped by the number of eligible windows.
- Frame count: `T = ceil(num_samples / hop)` unless `num_frames` is given (to match a feature sequence). A
  window's entropy uses only its real samples; a window with none (past the waveform end) has entropy 0.
- Defaults `num_bins = 64` and `sigma = 2 / (num_bins - 1)` (one bin spacing); the paper gives no values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._batch import lengths_from_starts, valid_mask

__all__ = ["temporal_entropy", "entropy_segments", "default_hop"]

_EPS = 1e-8


def default_hop(sample_rate: int) -> int:
    """Samples per 12.5 Hz base frame (80 ms): 1280 at 16 kHz."""
    return int(round(0.08 * sample_rate))


def _frame_affinity_sums(wav: Tensor, n_samples: Tensor, T: int, hop: int, num_bins: int, sigma: float,
                         chunk_elems: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """Per base frame: summed Gaussian affinities `[B, T, N]` and real-sample counts `[B, T]`.

    Frames are processed in chunks only to bound memory (about `chunk_elems` values at a time); every
    frame's sum is reduced over its own samples, so chunking and padding do not change it.
    """
    B = wav.shape[0]
    need = T * hop
    w = wav[:, :need] if wav.shape[1] >= need else torch.nn.functional.pad(wav, (0, need - wav.shape[1]))
    # float32 affinities: exp over every sample x bin dominates the cost; sums and entropies are float64.
    w = w.float().clamp(-1.0, 1.0).reshape(B, T, hop)
    real = (torch.arange(need, device=wav.device).unsqueeze(0) < n_samples.unsqueeze(1)).reshape(B, T, hop)
    bins = torch.linspace(-1.0, 1.0, num_bins, dtype=torch.float32, device=wav.device)
    sums = torch.zeros(B, T, num_bins, dtype=torch.float64, device=wav.device)
    chunk_frames = max(1, chunk_elems // max(1, B * hop * num_bins))
    for s in range(0, T, chunk_frames):
        blk = w[:, s:s + chunk_frames].unsqueeze(-1)  # [B, c, hop, 1]
        # Exponents below -80 are raised to -80 (e^-80 ~ 1.8e-35): it keeps exp off the slow denormal path and
        # changes no entropy by a representable amount.
        aff = (blk - bins).square_().mul_(-0.5 / (sigma * sigma)).clamp_(min=-80.0).exp_()
        aff.mul_(real[:, s:s + chunk_frames].unsqueeze(-1))
        sums[:, s:s + chunk_frames] = aff.sum(2, dtype=torch.float64)
    return sums, real.sum(2).double()


def _entropy(sums: Tensor, counts: Tensor) -> Tensor:
    """Eq. 3-4 from summed affinities `[..., N]` and sample counts `[...]`."""
    p = sums / counts.clamp_min(1.0).unsqueeze(-1)
    p = p / (p.sum(-1, keepdim=True) + _EPS)
    return -torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p)).sum(-1)


def _group(v: Tensor, k: int) -> Tensor:
    """Sum groups of k consecutive frames along dim 1 (tail zero-padded): `[B, T, ...] -> [B, ceil(T/k), ...]`."""
    B, T = v.shape[:2]
    n = -(-T // k)
    pad = n * k - T
    if pad:
        v = torch.cat([v, v.new_zeros((B, pad) + tuple(v.shape[2:]))], dim=1)
    return v.reshape((B, n, k) + tuple(v.shape[2:])).sum(2)


@torch.no_grad()  # scheduling decisions are discrete: no graph needed
def temporal_entropy(wav: Tensor, sample_rate: int, frame_hop: int | None = None,
                     num_frames: int | Tensor | None = None, lengths: Tensor | None = None, num_bins: int = 64,
                     sigma: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Fine, medium and coarse entropy sequences of a waveform.

    Args:
        wav: `[N]` mono waveform in [-1, 1], or `[B, N]` padded batch.
        sample_rate: Hz; frame_hop: samples per base frame (default 80 ms).
        num_frames: frames T (int or `[B]`); default `ceil(num_samples / hop)`.
        lengths: `[B]` real samples per item (batched only).
    Returns:
        `(h_f [B, T], h_m [B, ceil(T/2)], h_c [B, ceil(T/4)])` float64 (no batch dim for `[N]` input). Entries past
        an item's frames are 0.
    """
    wb, n_samples, n_frames, hop, batched = _prepare(wav, sample_rate, frame_hop, num_frames, lengths)
    h = _entropies(wb, n_samples, n_frames, hop, num_bins, sigma)
    return h if batched else tuple(v[0] for v in h)


def _prepare(wav: Tensor, sample_rate: int, frame_hop: int | None, num_frames: int | Tensor | None,
             lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor, int, bool]:
    wav = torch.as_tensor(wav)
    if wav.dim() == 1:
        if lengths is not None:
            raise ValueError("lengths is only meaningful for a batched [B, N] waveform")
        wb, batched = wav.unsqueeze(0), False
    elif wav.dim() == 2:
        wb, batched = wav, True
    else:
        raise ValueError(f"expected a [N] or [B, N] waveform, got shape {tuple(wav.shape)}")
    if not wb.dtype.is_floating_point:
        raise TypeError(f"waveform must be floating point in [-1, 1], got {wb.dtype}")
    B, N = wb.shape
    hop = int(frame_hop) if frame_hop is not None else default_hop(sample_rate)
    if hop < 1:
        raise ValueError(f"frame_hop must be >= 1 sample, got {hop}")
    n_samples = (torch.full((B,), N, dtype=torch.long) if lengths is None
                 else torch.as_tensor(lengths).long().reshape(-1)).to(wb.device)
    if n_samples.numel() != B or (B and (int(n_samples.min()) < 0 or int(n_samples.max()) > N)):
        raise ValueError(f"lengths must give 0..{N} samples for each of {B} items")
    if num_frames is None:
        n_frames = (n_samples + hop - 1) // hop
    else:
        n_frames = torch.as_tensor(num_frames).long().reshape(-1).to(wb.device)
        if n_frames.numel() == 1:
            n_frames = n_frames.expand(B).clone()
        if n_frames.numel() != B or (B and int(n_frames.min()) < 0):
            raise ValueError("num_frames must be a non-negative int or one per item")
    # Samples beyond an item's frames are not part of any window.
    n_samples = torch.minimum(n_samples, n_frames * hop)
    return wb, n_samples, n_frames, hop, batched


def _entropies(wb: Tensor, n_samples: Tensor, n_frames: Tensor, hop: int, num_bins: int,
               sigma: float | None) -> tuple[Tensor, Tensor, Tensor]:
    if num_bins < 2:
        raise ValueError("num_bins must be >= 2")
    sig = float(sigma) if sigma is not None else 2.0 / (num_bins - 1)
    if sig <= 0:
        raise ValueError("sigma must be > 0")
    T = int(n_frames.max()) if wb.shape[0] else 0
    sums, counts = _frame_affinity_sums(wb, n_samples, T, hop, num_bins, sig)
    fvalid = valid_mask(n_frames, T)
    sums = sums * fvalid.unsqueeze(-1)
    counts = counts * fvalid
    h_f = _entropy(sums, counts)
    h_m = _entropy(_group(sums, 2), _group(counts, 2))
    h_c = _entropy(_group(sums, 4), _group(counts, 4))
    return h_f, h_m, h_c


def _lowest(h: Tensor, eligible: Tensor, k: Tensor) -> Tensor:
    """`[B, n]` bool: the k[b] lowest-entropy eligible windows of each row (stable: ties go to the earlier one)."""
    key = torch.where(eligible, h, torch.full_like(h, float("inf")))
    order = torch.sort(key, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h.shape[1], device=h.device).expand_as(order).contiguous())
    return (rank < k.unsqueeze(1)) & eligible


def _round_half_up(v: Tensor) -> Tensor:
    return torch.floor(v + 0.5).long()


@torch.no_grad()  # scheduling decisions are discrete: no graph needed
def entropy_segments(wav: Tensor, sample_rate: int, ratios: tuple[float, float, float] = (0.4, 0.3, 0.3),
                     frame_hop: int | None = None, num_frames: int | Tensor | None = None,
                     lengths: Tensor | None = None, num_bins: int = 64, sigma: float | None = None) -> Tensor:
    """TFC granularity allocation as segment lengths in {1, 2, 4} base frames.

    Args:
        wav: `[N]` mono waveform in [-1, 1] or `[B, N]` padded batch.
        sample_rate: Hz.
        ratios: `(r_f, r_m, r_c)` >= 0 summing to 1: the fraction of frames kept single, in 2-frame and in
            4-frame segments. The average rate is `base * (r_f + r_m / 2 + r_c / 4)`
            (see `codec.dynamic.target_rate.entropy_ratios_for_rate`). Default: the paper's training mix.
        frame_hop: samples per base frame (default 80 ms: 1280 at 16 kHz).
        num_frames: T (int or `[B]`); default `ceil(num_samples / hop)`.
        lengths: `[B]` real samples per item (batched only).
        num_bins, sigma: entropy histogram (defaults: 64 bins, sigma = one bin spacing).
    Returns:
        `[G]` long summing to T; `[B, Gmax]` zero-padded for batched input.
    """
    r_f, r_m, r_c = (float(r) for r in ratios)
    if min(r_f, r_m, r_c) < 0 or not math.isclose(r_f + r_m + r_c, 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios (r_f, r_m, r_c) must be >= 0 and sum to 1, got {tuple(ratios)}")
    wb, n_samples, n_frames, hop, batched = _prepare(wav, sample_rate, frame_hop, num_frames, lengths)
    _, h_m, h_c = _entropies(wb, n_samples, n_frames, hop, num_bins, sigma)
    B, T = wb.shape[0], (int(n_frames.max()) if wb.shape[0] else 0)
    dev = wb.device

    # Coarse: complete 4-frame windows only.
    nc = h_c.shape[1]
    c_elig = (torch.arange(nc, device=dev).unsqueeze(0) * 4 + 4) <= n_frames.unsqueeze(1)
    k_c = torch.minimum(_round_half_up(r_c * n_frames.double() / 4), c_elig.sum(1))
    b_c = _lowest(h_c, c_elig, k_c)
    # Medium: complete 2-frame windows not already inside a chosen coarse window (eq. 5's h'_m).
    nm = h_m.shape[1]
    m_idx = torch.arange(nm, device=dev).unsqueeze(0)
    covered = torch.gather(b_c, 1, (m_idx // 2).expand(B, nm)) if nc else torch.zeros(B, nm, dtype=torch.bool,
                                                                                       device=dev)
    m_elig = ((m_idx * 2 + 2) <= n_frames.unsqueeze(1)) & ~covered
    k_m = torch.minimum(_round_half_up(r_m * n_frames.double() / 2), m_elig.sum(1))
    b_m = _lowest(h_m, m_elig, k_m)

    # Per-frame: a frame starts a segment unless it is inside (not first in) a chosen coarse/medium window.
    t = torch.arange(T, device=dev)
    in_c = b_c.repeat_interleave(4, dim=1)[:, :T]
    in_m = b_m.repeat_interleave(2, dim=1)[:, :T]
    valid = valid_mask(n_frames, T)
    starts = valid & ~(in_c & (t % 4 != 0)) & ~(in_m & (t % 2 != 0))
    out = lengths_from_starts(starts, valid)
    return out if batched else out[0]
