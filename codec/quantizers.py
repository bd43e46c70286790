"""The codec's quantisers: FSQ for the semantic stream, factorised residual VQ for the acoustic residual.

- `FSQ` (Mentzer et al., 2023): project to `len(levels)` dims, bound each with tanh, round (straight-through).
  Levels [8, 8, 8, 8, 8] give 8^5 = 32768 codes. No codebook, hence no codebook loss and no collapse.
- `FactorizedVQ` / `ResidualVQ` (DAC, Kumar et al., 2023): each codebook looks up in a low-dimensional space
  (8-d): the input is projected down, L2-normalised and matched to the L2-normalised codebook by cosine, and
  the chosen (unnormalised) entry is projected back up. Low-d normalised lookup keeps large codebooks in use.

All work on `[B, G, D]` token sequences with a `[B, G]` validity mask; losses average over valid tokens only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[B, G]` values over True positions of `mask` (0 when none)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


class FSQ(nn.Module):
    """Finite scalar quantisation `[B, G, dim] -> ([B, G, dim], codes [B, G])`."""

    def __init__(self, dim: int, levels: list[int], eps: float = 1e-3):
        super().__init__()
        self.levels_list = [int(l) for l in levels]
        self.register_buffer("levels", torch.tensor(self.levels_list, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + self.levels_list[:-1], dtype=torch.long), dim=0)
        self.register_buffer("basis", basis, persistent=False)
        self.eps = eps
        self.codebook_size = math.prod(self.levels_list)
        self.in_proj = nn.Linear(dim, len(levels))
        self.out_proj = nn.Linear(len(levels), dim)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash `[..., d]` so that rounding gives exactly `levels[i]` integer values per dimension."""
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """`[..., d]` latent -> grid values in [-1, 1) (straight-through gradient through the rounding)."""
        bounded = self._bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / (self.levels // 2).to(z.dtype)

    def values_to_codes(self, values: torch.Tensor) -> torch.Tensor:
        """Grid values `[..., d]` (as `quantize_latent` gives) -> integer codes `[...]`."""
        half = self.levels // 2
        digits = (torch.round(values * half.to(values.dtype)).long() + half).clamp(min=0)
        digits = torch.minimum(digits, self.levels - 1)
        return (digits * self.basis).sum(dim=-1)

    def codes_to_values(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes `[...]` -> grid values `[..., d]`."""
        digits = torch.div(codes.long()[..., None], self.basis, rounding_mode="floor") % self.levels
        half = self.levels // 2
        return (digits - half).float() / half.float()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, G, dim]` -> (quantised and projected back `[B, G, dim]`, codes `[B, G]`)."""
        values = self.quantize_latent(self.in_proj(x))
        return self.out_proj(values), self.values_to_codes(values.detach())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, G]` -> `[B, G, dim]` (what `forward` returns for them)."""
        return self.out_proj(self.codes_to_values(codes).to(self.out_proj.weight.dtype))


class FactorizedVQ(nn.Module):
    """One DAC-style codebook: project to `codebook_dim`, cosine lookup, project back."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int = 8):
        super().__init__()
        self.in_proj = nn.Linear(dim, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, dim)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        # No offset before the normalised lookup: a random bias would dominate small inputs and map every
        # token to the same entry.
        nn.init.zeros_(self.in_proj.bias)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry by cosine similarity: `[..., codebook_dim]` -> codes `[...]`."""
        sims = F.normalize(z_e, dim=-1) @ F.normalize(self.codebook.weight, dim=-1).t()
        return sims.argmax(dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`[B, G, dim]` -> (quantised `[B, G, dim]`, codes `[B, G]`, commitment `[B, G]`, codebook loss `[B, G]`)."""
        z_e = self.in_proj(x)
        codes = self.lookup(z_e.detach())
        z_q = self.codebook(codes)
        commitment = (z_e - z_q.detach()).pow(2).mean(dim=-1)
        codebook = (z_q - z_e.detach()).pow(2).mean(dim=-1)
        z_q = z_e + (z_q - z_e).detach()  # straight-through to the encoder
        return self.out_proj(z_q), codes, commitment, codebook

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, G]` -> `[B, G, dim]`."""
        return self.out_proj(self.codebook(codes))


class ResidualVQ(nn.Module):
    """Residual stack of `FactorizedVQ`s: codebook i quantises what codebooks 0..i-1 left over."""

    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, codebook_dim: int = 8):
        super().__init__()
        self.codebook_size = codebook_size
        self.quantizers = nn.ModuleList(FactorizedVQ(dim, codebook_size, codebook_dim) for _ in range(num_codebooks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, num_active: torch.Tensor | int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise `[B, G, dim]`.

        Args:
            x: `[B, G, dim]` residual to quantise.
            mask: `[B, G]` bool, True on real tokens.
            num_active: codebooks to use: an int for the whole batch, or `[B]` per item (quantiser dropout;
                0 = none); default all.
        Returns:
            (sum of the active codebooks' outputs `[B, G, dim]` (0 on padding), codes `[B, N, G]` with
            `N = max(num_active)` (0 where inactive or padding), commitment loss, codebook loss (scalars: sum
            over codebooks of the mean over the tokens each one quantised)).
        """
        batch = x.shape[0]
        n_total = len(self.quantizers)
        active_n = torch.as_tensor(n_total if num_active is None else num_active, device=x.device).long()
        if active_n.dim() == 0:
            active_n = active_n.expand(batch)
        n_max = int(active_n.max()) if batch else 0
        if n_max > n_total:
            raise ValueError(f"{n_max} codebooks asked for, {n_total} available")
        out = torch.zeros_like(x)
        residual = x
        codes_all, commit, cb_loss = [], x.new_zeros(()), x.new_zeros(())
        for i in range(n_max):
            use = mask & (active_n > i)[:, None]  # [B, G]
            quantized, codes, commitment, codebook = self.quantizers[i](residual)
            quantized = quantized * use[..., None].to(x.dtype)
            out = out + quantized
            residual = residual - quantized
            codes_all.append(torch.where(use, codes, torch.zeros_like(codes)))
            commit = commit + _masked_mean(commitment, use)
            cb_loss = cb_loss + _masked_mean(codebook, use)
        codes_t = torch.stack(codes_all, dim=1) if codes_all else x.new_zeros((batch, 0, x.shape[1]), dtype=torch.long)
        return out, codes_t, commit, cb_loss

    def decode(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Codes `[B, N, G]` -> sum of the first N codebooks' outputs `[B, G, dim]` (0 where `mask` is False)."""
        if codes.shape[1] > len(self.quantizers):
            raise ValueError(f"{codes.shape[1]} codebooks in the codes, {len(self.quantizers)} in the quantiser")
        out = None
        for i in range(codes.shape[1]):
            part = self.quantizers[i].decode(codes[:, i])
            out = part if out is None else out + part
        if out is None:
            raise ValueError("no acoustic codebooks to decode")
        return out if mask is None else out * mask[..., None].to(out.dtype)
