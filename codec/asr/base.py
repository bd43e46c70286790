"""The interface every source of semantic (ASR) features implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class ASRFeatureExtractor(ABC):
    """Frozen ASR-encoder features on the codec's 12.5 Hz grid.

    Implementations are `nn.Module`s as well; `extract` runs without gradients on their parameters.
    """

    #: feature dimension D
    feature_dim: int
    #: input sample rate (16 kHz for every backend here)
    sample_rate: int = 16000

    @abstractmethod
    def extract(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a padded batch of 16 kHz waveforms.

        Args:
            wav: `[B, S]` float waveforms.
            wav_lengths: `[B]` valid samples per item (all `S` when omitted).

        Returns:
            `(features [B, T, D], lengths [B])` at 12.5 Hz, `lengths = ceil(wav_lengths / 1280)`,
            zero past each length.
        """
