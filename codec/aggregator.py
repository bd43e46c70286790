"""Segment aggregation: one vector per merged segment from the 12.5 Hz frames it covers.

FlexiCodec's query-token aggregator: after each segment's frames comes a query token (the segment mean plus a
learned vector); the interleaved sequence `f1 f2 q1 f3 q2 ...` runs through a small transformer (local
attention window, or attention within the segment only) and the outputs at the query positions are the
segment vectors. We add that output to the segment mean, with the final projection starting at zero, so the
aggregator starts as plain mean pooling and learns a correction. `mode="mean"` is the plain mean.

Everything is vectorised: positions in the interleaved sequence come from a cumulative sum and a
`searchsorted`, and frames and queries are placed with one scatter each.
"""
from __future__ import annotations

import torch
from torch import nn

from codec.dynamic import merge
from codec.transformer import Transformer


def interleave_positions(seg: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where frames and query tokens go in the interleaved sequence of length `T + G`.

    Args:
        seg: `[B, G]` segment lengths (zero-padded); num_frames: T, the padded frame count.
    Returns:
        (frame positions `[B, T]`, query positions `[B, G]`, segment id of each frame `[B, T]` (G on padding),
        valid `[B, T + G]` bool). Frame t of segment g goes to `t + g`, the query of segment g right after the
        segment's last frame (`end_g + g`); padding frames and queries fill the tail, in order.
    """
    batch, groups = seg.shape
    ends = seg.cumsum(dim=1)  # [B, G], exclusive end frame of each segment (constant over padding)
    frames_b = ends[:, -1] if groups else seg.new_zeros(batch)
    groups_b = (seg > 0).sum(dim=1)
    t = torch.arange(num_frames, device=seg.device).expand(batch, -1).contiguous()
    seg_id = torch.searchsorted(ends, t, right=True)  # number of segments ending at or before t
    real_frame = t < frames_b[:, None]
    frame_pos = torch.where(real_frame, t + seg_id, t + groups_b[:, None])
    g = torch.arange(groups, device=seg.device).expand(batch, -1)
    real_query = g < groups_b[:, None]
    query_pos = torch.where(real_query, ends + g, num_frames + g)
    valid = torch.arange(num_frames + groups, device=seg.device)[None, :] < (frames_b + groups_b)[:, None]
    return frame_pos, query_pos, torch.where(real_frame, seg_id, torch.full_like(seg_id, groups)), valid


class SegmentAggregator(nn.Module):
    """`[B, T, dim]` frames and `[B, G]` segment lengths -> `[B, G, dim]` segment vectors (0 on padding)."""

    def __init__(self, dim: int, mode: str = "transformer", model_dim: int = 96, layers: int = 1, heads: int = 4,
                 ffn: int = 256, window: int = 16):
        super().__init__()
        self.mode = mode
        self.window = window
        if mode == "transformer":
            self.query = nn.Parameter(torch.randn(dim))  # tells query tokens apart from frames
            self.transformer = Transformer(dim, model_dim, layers, heads, ffn, out_dim=dim,
                                           window=window if window > 0 else 0)
            # Start as mean pooling: the transformer's correction is exactly zero at initialisation.
            nn.init.zeros_(self.transformer.norm.weight)
            if isinstance(self.transformer.out_proj, nn.Linear):
                nn.init.zeros_(self.transformer.out_proj.bias)
        elif mode != "mean":
            raise ValueError(f"unknown aggregator mode '{mode}'")

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        mean = merge(x, seg)  # [B, G, D]
        if self.mode == "mean":
            return mean
        batch, frames, dim = x.shape
        groups = seg.shape[1]
        frame_pos, query_pos, seg_id, valid = interleave_positions(seg, frames)
        queries = mean + self.query
        seq = x.new_zeros(batch, frames + groups, dim)
        seq = seq.scatter(1, frame_pos[..., None].expand(-1, -1, dim), x)
        seq = seq.scatter(1, query_pos[..., None].expand(-1, -1, dim), queries)
        group_ids = None
        if self.window <= 0:  # attention within each segment: frames and the segment's own query
            g_of_pos = torch.empty(batch, frames + groups, dtype=torch.long, device=x.device)
            g_of_pos.scatter_(1, frame_pos, seg_id)
            g_of_pos.scatter_(1, query_pos, torch.arange(groups, device=x.device).expand(batch, -1).contiguous())
            group_ids = g_of_pos
        out = self.transformer(seq, valid, group_ids)
        correction = out.gather(1, query_pos[..., None].expand(-1, -1, dim))
        return (mean + correction) * (seg > 0)[..., None].to(x.dtype)
