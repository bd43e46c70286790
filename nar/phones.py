"""Phone conditioning of the Voicebox (`VoiceboxConfig.num_phones`): the text's phones, aligned at 25 Hz (two
sub-frames per 12.5 Hz base frame; id 0 where no phone has started yet or none is known), enter the code encoder
next to the codes. Voicebox itself conditions on aligned phones; here they back up what merged codes leave out.
"""
from __future__ import annotations

import torch
from torch import nn

from nar.config import VoiceboxConfig

#: Phone sub-frames per 12.5 Hz base frame (the recogniser's 25 Hz).
SUBFRAMES = 2


class PhoneEmbedding(nn.Module):
    """Phone ids `[B, 2T]` -> `[B, T, D]`: each base frame's two sub-frame phones, embedded (rank `phone_rank`),
    joined and projected. The projection starts at zero, so adding phones to a trained model changes nothing
    until it learns to use them; id 0 embeds to zero."""

    def __init__(self, config: VoiceboxConfig):
        super().__init__()
        self.embed = nn.Embedding(config.num_phones, config.phone_rank, padding_idx=0)
        self.proj = nn.Linear(SUBFRAMES * config.phone_rank, config.dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, phone_ids: torch.Tensor, frames: int) -> torch.Tensor:
        ids = torch.nn.functional.pad(phone_ids, (0, max(0, SUBFRAMES * frames - phone_ids.shape[1])))[:, : SUBFRAMES * frames]
        vectors = self.embed(ids.clamp(0, self.embed.num_embeddings - 1)).reshape(ids.shape[0], frames, -1)
        return self.proj(vectors)
