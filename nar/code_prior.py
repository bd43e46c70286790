"""`CodePrior`: a small convolutional encoder over the 12.5 Hz codes that gives the Voicebox its per-frame
condition and a mel "prior" trained with a direct L1 loss (the encoder + prior loss of Matcha-TTS and
CosyVoice's flow decoder).

Without it the code embedding reaches the mel only through the flow-matching loss, whose gradient is mostly
noise at small t; the prior loss gives the code embeddings a direct path to the mel they stand for, which is
what makes a small model learn content in few steps.

    code embeddings [B, T, D] (12.5 Hz) ─ ConvNeXt blocks (vocos) ─> h [B, T, D]
    h ─ repeat x frames_per_base + sub-frame embedding ─> condition [B, F, D]      (F = frames_per_base * T)
    h ─ LayerNorm ─ Linear(D, frames_per_base * M) ─ reshape ─> prior mel [B, F, M]
"""
from __future__ import annotations

import torch
from torch import nn
from vocos.modules import ConvNeXtBlock


class CodePrior(nn.Module):
    def __init__(self, dim: int, n_mels: int, frames_per_base: int, num_layers: int):
        super().__init__()
        self.frames_per_base, self.n_mels = frames_per_base, n_mels
        # Layer scale 0.1 (not vocos' 1e-6): the blocks start close to the identity without being inert.
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, 3 * dim, layer_scale_init_value=0.1) for _ in range(num_layers))
        self.subframe = nn.Parameter(torch.zeros(frames_per_base, dim))
        self.norm = nn.LayerNorm(dim)
        self.to_mel = nn.Linear(dim, frames_per_base * n_mels)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition `[B, F, D]` and prior mel `[B, F, M]` from code embeddings `[B, T, D]` with valid-frame
        `mask [B, T]`; padding stays zero and never reaches a valid frame."""
        keep = mask[..., None].to(embeddings.dtype)
        h = embeddings * keep
        for block in self.blocks:
            h = block(h.transpose(1, 2)).transpose(1, 2) * keep
        batch, frames, dim = h.shape
        fpb = self.frames_per_base
        cond = (h[:, :, None, :] + self.subframe) * keep[:, :, None, :]
        prior = self.to_mel(self.norm(h)).reshape(batch, frames, fpb, self.n_mels) * keep[:, :, None, :]
        return cond.reshape(batch, frames * fpb, dim), prior.reshape(batch, frames * fpb, self.n_mels)
