"""A small bidirectional transformer with rotary positions, a padding mask and optional local attention.

Used by the segment aggregator (over interleaved frames and query tokens) and by the decoder at 12.5 Hz.
Rotary positions are relative, and padded keys are masked out, so an item in a padded batch sees exactly what
it sees alone. Pre-norm layers with a small layer scale (0.01, as Mimi's transformer in FlexiCodec) start
close to the identity, which keeps a deep stack trainable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(length: int, head_dim: int, device: torch.device, dtype: torch.dtype,
                  base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cos, sin)` of shape `[length, head_dim // 2]` for positions 0..length-1."""
    inv_freq = base ** (-torch.arange(0, head_dim // 2, device=device, dtype=torch.float32) * 2 / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `[B, H, L, hd]` queries or keys by their positions (half-split convention)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class TransformerLayer(nn.Module):
    """Pre-norm self-attention + GELU feed-forward, each with a learned layer scale."""

    def __init__(self, dim: int, heads: int, ffn: int, layer_scale: float = 0.01):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.scale1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.scale2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """`x [B, L, dim]`, `mask [B, 1, L, L]` bool (True: may attend) -> `[B, L, dim]`."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.scale1 * self.proj(attn.transpose(1, 2).reshape(batch, length, dim))
        return x + self.scale2 * self.ffn(self.norm2(x))


def attention_mask(valid: torch.Tensor, window: int = 0, groups: torch.Tensor | None = None) -> torch.Tensor:
    """`[B, 1, L, L]` bool attention mask.

    Args:
        valid: `[B, L]` bool, True on real positions (padded keys are never attended to).
        window: if > 0, position i attends to j only when `|i - j| <= window`.
        groups: `[B, L]` long; if given, i attends to j only within the same group.
    Every position may attend to itself, so no row is empty (padded rows stay finite and are zeroed later).
    """
    length = valid.shape[1]
    mask = valid[:, None, :].expand(-1, length, -1)
    if window > 0:
        idx = torch.arange(length, device=valid.device)
        mask = mask & ((idx[:, None] - idx[None, :]).abs() <= window)[None]
    if groups is not None:
        mask = mask & (groups[:, :, None] == groups[:, None, :])
    mask = mask | torch.eye(length, dtype=torch.bool, device=valid.device)[None]
    return mask[:, None]


class Transformer(nn.Module):
    """`[B, L, in_dim]` with a `[B, L]` validity mask -> `[B, L, out_dim]` (0 on padding).

    Linear projections in and out when the model width differs from the input/output size, as in Mimi's
    `ProjectedTransformer`.
    """

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, ffn: int, out_dim: int | None = None,
                 window: int = 0, layer_scale: float = 0.01):
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        self.window = window
        self.head_dim = dim // heads
        self.in_proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ffn, layer_scale) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim) if out_dim != dim else nn.Identity()

    def forward(self, x: torch.Tensor, valid: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        h = self.in_proj(x)
        mask = attention_mask(valid, self.window, groups)
        cos, sin = rotary_tables(h.shape[1], self.head_dim, h.device, h.dtype)
        for layer in self.layers:
            h = layer(h, mask, cos, sin)
        return self.out_proj(self.norm(h)) * valid[..., None].to(h.dtype)
