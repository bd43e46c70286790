"""Sub-frame phone reader: what the semantic codes say at the recogniser's own rate (25 Hz), not at 12.5 Hz.

Speech runs at about 12-13 phones a second, as fast as the 12.5 Hz grid, so a CTC head that reads one 12.5 Hz
vector per frame cannot emit every phone (reading the recogniser's own pooled features that way already loses a
third of them). This reader expands each merged token into `subframes` vectors per 12.5 Hz frame it covers,
told apart by their position inside the token and the token's length, so a token can spell out the phone
sequence of its whole span. Trained against the recogniser's frame posteriors (see
`FlexiCodec.subframe_distillation`), it makes the codes carry that sequence; at inference it is how code
content is read (`FlexiCodec.read_code_phones`).
"""
from __future__ import annotations

import torch
from torch import nn

from codec.dynamic import unmerge


def token_positions(seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset of each 12.5 Hz frame inside its token and that token's length.

    Args:
        seg: `[B, G]` token lengths in frames (zero-padded).
    Returns:
        (offset `[B, T]`, length `[B, T]`), `T = max row sum`; 0 and 0 on padding frames.
    """
    starts = seg.cumsum(dim=1) - seg
    both = unmerge(torch.stack([starts, seg], dim=-1), seg)  # [B, T, 2]
    frames = torch.arange(both.shape[1], device=seg.device)[None, :]
    length = both[..., 1]
    offset = torch.where(length > 0, frames - both[..., 0], torch.zeros_like(length))
    return offset, length


class SubframePhoneReader(nn.Module):
    """Decoded semantic tokens `[B, G, latent]` -> recogniser-space vectors `[B, T * subframes, out_dim]`.

    Each output vector is an MLP of its token's embedding plus learned embeddings of its sub-frame position
    inside the token (0 .. max_len * subframes - 1) and of the token's length (1 .. max_len).
    """

    def __init__(self, latent_dim: int, out_dim: int, hidden: int, max_len: int, subframes: int):
        super().__init__()
        self.subframes = subframes
        self.max_len = max_len
        self.inp = nn.Linear(latent_dim, hidden)
        self.position = nn.Embedding(max_len * subframes, hidden)
        self.length = nn.Embedding(max_len, hidden)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, decoded: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (vectors `[B, T * subframes, out_dim]`, valid `[B, T * subframes]` bool)."""
        s = self.subframes
        offset, length = token_positions(seg)  # [B, T]
        valid = length > 0
        x = self.inp(unmerge(decoded, seg))  # [B, T, hidden]
        x = x + self.length((length - 1).clamp(min=0))
        x = x.repeat_interleave(s, dim=1)  # [B, T * s, hidden]
        sub = torch.arange(s, device=seg.device).repeat(offset.shape[1])[None, :]  # [1, T * s]
        position = (offset.repeat_interleave(s, dim=1) * s + sub).clamp(max=self.max_len * s - 1)
        y = self.out(x + self.position(position))
        valid = valid.repeat_interleave(s, dim=1)
        return y * valid[..., None].to(y.dtype), valid
