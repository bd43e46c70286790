"""A padding-exact Conformer encoder (Gulati et al., 2020).

torchaudio's Conformer lets padded frames leak into valid ones through its depthwise convolution and batch
norm; this one zeroes the padding before every convolution and normalises per frame (LayerNorm), so a
padded batch gives what each item gives alone.
"""
from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """Pre-norm position-wise feed-forward block `[B, T, D] -> [B, T, D]`."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, LayerNorm, SiLU, pointwise conv, on `[B, T, D]` with a `[B, T]` mask."""

    def __init__(self, dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.depth_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = nn.functional.glu(self.pointwise_in(self.norm(x)), dim=-1)
        y = y * valid[..., None]  # padded frames must not reach valid ones through the kernel
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        y = self.pointwise_out(nn.functional.silu(self.depth_norm(y)))
        return self.dropout(y)


class ConformerLayer(nn.Module):
    """Macaron FFN/2, self-attention, convolution, FFN/2, final LayerNorm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.ffn1 = FeedForward(dim, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ffn2 = FeedForward(dim, ffn_dim, dropout)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        h = self.attn_norm(x)
        h, _ = self.attn(h, h, h, key_padding_mask=~valid.bool(), need_weights=False)
        x = x + self.attn_dropout(h)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ffn2(x)
        return self.out_norm(x) * valid[..., None]


class Conformer(nn.Module):
    """Stack of `ConformerLayer`s: `([B, T, D], [B] lengths) -> [B, T, D]` (zero on padding)."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(ConformerLayer(dim, num_heads, ffn_dim, kernel_size, dropout) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)
        x = x * valid[..., None]
        for layer in self.layers:
            x = layer(x, valid)
        return x
