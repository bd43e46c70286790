"""The AR model's own input embeddings (speech codes, rate) and its code head."""
from __future__ import annotations

import torch
from torch import nn

from ar.config import BASE_FRAME_RATE, ARConfig


class CodeEmbedding(nn.Module):
    """Semantic code ids `[...]` -> vectors `[..., H]`.

    "table" keeps one vector per code. "fsq" splits a code into its FSQ digits (the codec's order:
    `code = sum_k digit_k * prod(levels[:k])`), sums one learned vector per digit value and refines the sum
    with a small residual MLP: `sum(levels)` vectors instead of `prod(levels)`.
    """

    def __init__(self, config: ARConfig):
        super().__init__()
        hidden = config.hidden_size
        self.kind = config.code_embedding
        if self.kind == "table":
            self.table = nn.Embedding(config.codebook_size, hidden)
        else:
            levels = torch.tensor(config.fsq_levels, dtype=torch.long)
            basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), dim=0)
            offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), levels[:-1]]), dim=0)
            self.register_buffer("levels", levels, persistent=False)
            self.register_buffer("basis", basis, persistent=False)
            self.register_buffer("offsets", offsets, persistent=False)
            self.table = nn.Embedding(int(levels.sum()), hidden)
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.kind == "table":
            return self.table(codes)
        digits = torch.div(codes[..., None], self.basis, rounding_mode="floor") % self.levels  # [..., K]
        summed = self.table(digits + self.offsets).sum(dim=-2)
        return summed + self.mlp(summed)


class RateEmbedding(nn.Module):
    """Token rate in Hz `[B]` -> `[B, H]`: an MLP of `log(rate / 12.5)`, continuous so any rate works."""

    def __init__(self, config: ARConfig):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(1, config.rate_hidden), nn.SiLU(), nn.Linear(config.rate_hidden, config.hidden_size)
        )

    def forward(self, rate: torch.Tensor) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype
        x = torch.log(rate.to(dtype) / BASE_FRAME_RATE)[:, None]
        return self.mlp(x)


class CodeHead(nn.Module):
    """Hidden states `[..., H]` -> logits `[..., codebook_size + 1]` (the last class is EOS).

    With `head_rank` r > 0 the projection goes through an r-wide bottleneck, a low-rank factorisation of the
    `H x (V + 1)` matrix that divides its parameters by about H / r.
    """

    def __init__(self, config: ARConfig):
        super().__init__()
        classes = config.codebook_size + 1
        if config.head_rank:
            self.proj = nn.Sequential(nn.Linear(config.hidden_size, config.head_rank, bias=False), nn.Linear(config.head_rank, classes))
        else:
            self.proj = nn.Linear(config.hidden_size, classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-style initialisation of our own layers, matching the Llama backbone's scale (std 0.02)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=std)
            if sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()

