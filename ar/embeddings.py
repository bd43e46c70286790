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
            self.levels = list(config.fsq_levels)
            offsets = torch.cumsum(torch.tensor([0] + self.levels[:-1]), dim=0)
            self.register_buffer("offsets", offsets, persistent=False)
            self.table = nn.Embedding(sum(self.levels), hidden)
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.kind == "table":
            return self.table(codes)
        digits = fsq_digits(codes, self.levels)  # [..., K]
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


def fsq_digits(codes: torch.Tensor, levels: list[int]) -> torch.Tensor:
    """FSQ code ids `[...]` -> digits `[..., K]` in the codec's order (`code = sum_k d_k * prod(levels[:k])`)."""
    level = torch.tensor(levels, dtype=torch.long, device=codes.device)
    basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long, device=codes.device), level[:-1]]), dim=0)
    return torch.div(codes[..., None], basis, rounding_mode="floor") % level


class CodeHead(nn.Module):
    """Hidden states `[..., H]` -> logits `[..., codebook_size + 1]` (the last class is EOS).

    "softmax": a linear map, through an r-wide bottleneck when `head_rank` r > 0 (a low-rank factorisation of
    the `H x (V + 1)` matrix). "fsq": `sum(levels)` digit logits plus an EOS logit; a code's logit is the sum
    of its digits' logits, expanded to all V codes so that sampling and the loss see ordinary logits.
    """

    def __init__(self, config: ARConfig):
        super().__init__()
        self.kind = config.code_head
        if self.kind == "fsq":
            levels = list(config.fsq_levels)
            offsets = torch.cumsum(torch.tensor([0] + levels[:-1]), dim=0)
            index = fsq_digits(torch.arange(config.codebook_size), levels) + offsets  # [V, K]
            self.register_buffer("digit_index", index.t().contiguous(), persistent=False)  # [K, V]
            self.proj = nn.Linear(config.hidden_size, sum(levels) + 1)
        elif config.head_rank:
            classes = config.codebook_size + 1
            self.proj = nn.Sequential(nn.Linear(config.hidden_size, config.head_rank, bias=False), nn.Linear(config.head_rank, classes))
        else:
            self.proj = nn.Linear(config.hidden_size, config.codebook_size + 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.proj(hidden)
        if self.kind != "fsq":
            return out
        digits, eos = out[..., :-1], out[..., -1:]
        logits = digits[..., self.digit_index[0]]
        for row in self.digit_index[1:]:  # K gathers of [..., V]: no [..., V, K] intermediate
            logits = logits + digits[..., row]
        return torch.cat([logits, eos], dim=-1)


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

