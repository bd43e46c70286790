"""Phone agreement: how close the phones of generated speech are to those of the original recording, both read
by the bundled CTC phone recogniser.

Pocketsphinx WER saturates at about 1 for speech that is only partly intelligible; the phone error rate between
the recogniser's reading of the original and of the output (0 = the same phones) keeps resolving progress
there, on the speakers the recogniser knows (its PER on them is about 0, so its reading of the original stands
in for the truth). It is a development signal next to WER, not a replacement.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


class PhoneReader:
    """Greedy-CTC phone ids of a waveform, as one space-joined string per call.

    Args:
        recognizer: a `CTCPhoneRecognizer` (e.g. `TTS.asr`).
    """

    def __init__(self, recognizer: Any):
        self.recognizer = recognizer
        self.sample_rate = int(recognizer.config.sample_rate)

    @torch.no_grad()
    def read(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """`wav [S]` at `sample_rate` -> "12 7 31 ..." (phone-table ids)."""
        from flexitts.audio import resample

        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1)
        if sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate)
        param = next(self.recognizer.parameters())
        ids = self.recognizer.transcribe_ids(x[None].to(param.device, param.dtype))[0]
        return " ".join(map(str, ids))


def phone_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level edit distance over phone ids / reference phones (jiwer's WER on id "words")."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.strip()]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h if h.strip() else "<none>" for _, h in pairs]))
