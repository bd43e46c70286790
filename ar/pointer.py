"""The phone pointer (`ARConfig.phone_pointer`): the AR is told which phone of its text comes next, and predicts
how many phones each token starts, so it can neither skip nor repeat text (the monotonic alignment of VALL-E R).

Each item's text has `Ns` spoken phones (`flexitts.data.phone_alignment.spoken_positions`); token j has progress
`A_j` (phones started by its end, `A_0 = 0`). The input at token j adds `pointer_input(A_{j-1})`; the state there
predicts the advance `a_j = A_j - A_{j-1}` (a class 0..max_advance) and, with `pointer_code(A_j)` added, the next
code (EOS once every phone has started).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ar.config import ARConfig

#: Phones still to come are told apart up to this many (more count as this many).
REMAINING_BUCKETS = 8


class PhonePointerEmbedding(nn.Module):
    """Pointer `A [B, K]` into `spoken [B, Ns]` (phone ids, 0-padded, `lengths [B]`) -> `[B, K, H]`.

    The vector mixes the phoneme embeddings of the phones at `A - 1` (being spoken), `A` (due next) and `A + 1`
    (a padding id where out of range), through a `pointer_rank`-wide bottleneck (the demo bundle counts its
    bytes), with a learned vector for how many phones remain. The outputs start at zero, so adding the pointer to
    a trained model leaves its outputs unchanged until it learns to use it.
    """

    def __init__(self, config: ARConfig):
        super().__init__()
        hidden = config.hidden_size
        self.mix = nn.Sequential(nn.Linear(3 * hidden, config.pointer_rank, bias=False), nn.Linear(config.pointer_rank, hidden))
        self.remaining = nn.Embedding(REMAINING_BUCKETS + 1, hidden)
        for weight in (self.mix[1].weight, self.mix[1].bias, self.remaining.weight):
            nn.init.zeros_(weight)

    def forward(self, phoneme_embedding: nn.Embedding, spoken: torch.Tensor, lengths: torch.Tensor,
                pointer: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(-1, 2, device=pointer.device)  # [3]
        index = pointer[..., None] + offsets  # [B, K, 3]
        inside = (index >= 0) & (index < lengths[:, None, None])
        flat = index.clamp(0, max(0, spoken.shape[1] - 1)).flatten(1)  # [B, 3K]
        ids = spoken.gather(1, flat).view(index.shape) if spoken.shape[1] else torch.zeros_like(index)
        ids = torch.where(inside, ids, torch.zeros_like(ids))  # 0 = <pad>, a zero vector
        window = phoneme_embedding(ids).flatten(-2)  # [B, K, 3H]
        left = (lengths[:, None] - pointer).clamp(0, REMAINING_BUCKETS)
        out = self.mix(window) + self.remaining(left)
        return out * (lengths > 0)[:, None, None].to(out.dtype)  # no text, no pointer (text-dropped items)


def spoken_positions(phoneme_ids: Sequence[int], symbols: Sequence[str], skip: Sequence[str]) -> list[int]:
    """Indices of the entries of `phoneme_ids` that are phones: in the table `symbols`, not padding and not one
    of `skip` (stress marks, word boundaries, punctuation, specials: `ARConfig.pointer_skip`)."""
    silent = set(skip)
    return [i for i, p in enumerate(phoneme_ids) if 0 < int(p) < len(symbols) and symbols[int(p)] not in silent]


def token_progress(durations: torch.Tensor, onsets: torch.Tensor) -> torch.Tensor:
    """Phones started by the end of each token: `durations [G]` (base frames), `onsets [Ns]` (base frames,
    any order) -> `[G]` long, non-decreasing, at most `Ns`."""
    ends = torch.cumsum(torch.as_tensor(durations, dtype=torch.float64), dim=0)
    ordered = torch.sort(torch.as_tensor(onsets, dtype=torch.float64)).values
    return torch.searchsorted(ordered, ends, side="left")


def even_onsets(count: int, frames: int) -> torch.Tensor:
    """`count` phone onsets spread evenly over `frames` base frames (when a prompt's alignment is unknown)."""
    return torch.arange(count, dtype=torch.float64) * frames / max(1, count)


def spoken_phones(phoneme_ids: Sequence[int], config: ARConfig) -> list[int]:
    """The phone ids of a text, in order, as a phone-pointer model counts them (`spoken_positions` with the
    config's table and `pointer_skip`)."""
    ids = [int(p) for p in phoneme_ids]
    return [ids[i] for i in spoken_positions(ids, config.symbols, config.pointer_skip)]
