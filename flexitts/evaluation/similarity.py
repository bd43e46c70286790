"""Speaker similarity: cosine of resemblyzer's d-vectors (its weights ship inside the wheel)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from flexitts.errors import DependencyError


@dataclass
class SpeakerSimilarity:
    """`embed(wav, rate) -> [256]` unit vector; `score(a, rate_a, b, rate_b)` -> cosine in [-1, 1]."""

    device: str = "cpu"
    _encoder: object = field(default=None, init=False, repr=False)

    def _get_encoder(self):
        if self._encoder is None:
            try:
                from resemblyzer import VoiceEncoder
            except ImportError:
                raise DependencyError("resemblyzer is not installed: run `make setup`") from None
            self._encoder = VoiceEncoder(device=self.device, verbose=False)
        return self._encoder

    def embed(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        array = torch.as_tensor(wav, dtype=torch.float32).reshape(-1).numpy()
        processed = preprocess_wav(array, source_sr=sample_rate)
        if processed.size < sample_rate // 10:  # resemblyzer trims silence; nothing left means no voice
            processed = array
        return self._get_encoder().embed_utterance(processed)

    def score(self, a: np.ndarray | torch.Tensor, rate_a: int, b: np.ndarray | torch.Tensor, rate_b: int) -> float:
        return float(self.embed(a, rate_a) @ self.embed(b, rate_b))
