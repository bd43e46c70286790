"""The Voicebox backbone: a bidirectional transformer whose layer norms are modulated by the flow time `t`.

- Time conditioning is adaLN-single (PixArt-alpha): one shared `Linear(dim, 6 * dim)` of the time embedding gives
  shift / scale / gate for attention and feed-forward, and each layer adds its own learned `[6, dim]` offsets.
  DiT's per-layer modulation would cost `6 * dim^2` parameters a layer (40% of the demo model) for little gain.
  Modulation starts at zero (adaLN-Zero): every block starts as the identity.
- Positions: rotary embeddings in attention plus Voicebox's convolutional position embedding on the input.
- Attention is bidirectional with a key padding mask, so padding frames never reach valid ones; every
  convolution sees zeros past an item's end. A padded batch gives each item what it gets alone.
- Voicebox's U-Net skips: the second half of the layers concatenates the output of its mirror layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """`[B]` times in [0, 1] -> `[B, dim]` sin/cos features (t scaled by `scale`, as DDPM's step indices)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(1, half - 1))
    angles = (t.float() * scale)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def rotary_tables(length: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin `[length, head_dim]` for rotary position embeddings (half-split layout)."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `[B, H, T, d]` by position: `x * cos + rotate_half(x) * sin`."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`[B, T, D]` normalised activations shifted and scaled by `[B, D]` time-dependent vectors."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class ConvPositionEmbedding(nn.Module):
    """Two grouped convolutions along time with Mish, added to the input (F5-TTS / Voicebox)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.conv2 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`[B, T, D]` with `[B, T]` validity -> `[B, T, D]` (zero on padding)."""
        m = mask[:, None, :].to(x.dtype)
        h = F.mish(self.conv1(x.transpose(1, 2) * m))
        h = F.mish(self.conv2(h * m))
        return (h * m).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and a key padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        batch, steps, dim = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, steps, dim))


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated (shift, scale, gate) by the flow time."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.table = nn.Parameter(torch.zeros(6, dim))  # this layer's offsets to the shared modulation

    def forward(self, x: torch.Tensor, mod: torch.Tensor, attn_mask: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`x [B, T, D]`, shared modulation `mod [B, 6, D]`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.table[None]).unbind(dim=1)
        x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask, rope)
        return x + gate2[:, None, :] * self.ffn(modulate(self.norm2(x), shift2, scale2))


class AdaLNTransformer(nn.Module):
    """`[B, T, dim]` hidden states + `[B, dim]` time embedding + `[B, T]` validity -> `[B, T, dim]`."""

    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, dropout: float = 0.0,
                 conv_pos_kernel: int = 31, conv_pos_groups: int = 16, skip_connections: bool = True):
        super().__init__()
        self.heads = heads
        self.conv_pos = ConvPositionEmbedding(dim, conv_pos_kernel, conv_pos_groups) if conv_pos_kernel else None
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, ffn_dim, dropout) for _ in range(layers))
        self.shared_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.shared_mod[1].weight)
        nn.init.zeros_(self.shared_mod[1].bias)
        half = layers // 2
        self.skip_proj = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(half)) if skip_connections else None
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        nn.init.zeros_(self.final_mod[1].weight)
        nn.init.zeros_(self.final_mod[1].bias)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape
        if self.conv_pos is not None:
            x = x + self.conv_pos(x, mask)
        attn_mask = mask[:, None, None, :]  # [B, 1, 1, T]: every query attends to valid keys only
        rope = rotary_tables(steps, dim // self.heads, x.device, x.dtype)
        mod = self.shared_mod(time_emb).view(batch, 6, dim)
        half = len(self.blocks) // 2
        skips: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            if self.skip_proj is not None:
                if index < half:
                    skips.append(x)
                elif skips:  # with an odd count the last layer has no mirror
                    x = self.skip_proj[index - half](torch.cat([x, skips.pop()], dim=-1))
            x = block(x, mod, attn_mask, rope)
        shift, scale = self.final_mod(time_emb).chunk(2, dim=-1)
        return modulate(self.norm_out(x), shift, scale)
