"""Melt-and-Cool (CodecSlime) for dp-scheduled training: random segmentations with a growing share of long
segments (Melt), then DP-optimal ones with the encoder frozen (Cool, `train_segmentation="dp"`).

CodecSlime's Melt manager samples per-batch proportions of each segment length from a Dirichlet that moves
from "all length 1" towards a target mix; here one number, the share of frames inside segments longer than 1,
ramps linearly to its target, and long segments draw their length uniformly from 2..max_len. As in the paper,
a fixed share of utterances (50%) stays unmerged so the model keeps its fixed-rate skill.
"""
from __future__ import annotations

import torch


def melt_long_share(step: int, melt_steps: int, target_share: float) -> float:
    """Share of frames in long segments at training step `step`: 0 at the start, `target_share` from `melt_steps` on."""
    if melt_steps <= 0:
        return float(target_share)
    return float(target_share) * min(1.0, max(0, step) / melt_steps)


def random_segments(lengths_T: torch.Tensor, long_share: float, max_len: int = 8,
                    generator: torch.Generator | None = None, unmerged_prob: float = 0.0) -> torch.Tensor:
    """Random segmentations of a batch, vectorised.

    Args:
        lengths_T: `[B]` frames per utterance.
        long_share: expected share of frames inside segments of length 2..max_len (0: no merging, 1: all long).
        max_len: longest segment.
        generator: torch random generator (CPU) for reproducible draws.
        unmerged_prob: probability that an utterance is left entirely unmerged.
    Returns:
        `[B, Gmax]` long segment lengths, each row summing to `lengths_T[b]`, zero-padded.

    Each utterance draws a sequence of candidate lengths (long with probability p, else 1) and keeps the prefix
    that covers its frames, cutting the last one to fit. With mean long length m = (2 + max_len) / 2, a frame
    lies in a long segment with probability p m / (p m + 1 - p), so p = s / (m (1 - s) + s) gives share s.
    """
    if not 0.0 <= long_share <= 1.0:
        raise ValueError(f"long_share must lie in [0, 1], got {long_share}")
    device = lengths_T.device
    lengths_T = lengths_T.long().cpu()
    batch = lengths_T.shape[0]
    frames = int(lengths_T.max()) if batch else 0
    if frames == 0:
        return torch.zeros(batch, 0, dtype=torch.long, device=device)
    mean_long = (2 + max_len) / 2
    p = long_share / (mean_long * (1 - long_share) + long_share) if max_len > 1 else 0.0
    is_long = torch.rand(batch, frames, generator=generator) < p
    long_len = torch.randint(2, max(3, max_len + 1), (batch, frames), generator=generator)
    keep_all = torch.rand(batch, generator=generator) < unmerged_prob
    cand = torch.where(is_long & ~keep_all[:, None], long_len, torch.ones_like(long_len))
    before = cand.cumsum(dim=1) - cand  # frames covered before each candidate
    used = before < lengths_T[:, None]
    seg = torch.where(used, torch.minimum(cand, lengths_T[:, None] - before), torch.zeros_like(cand))
    return seg[:, : int(used.sum(dim=1).max())].to(device)
