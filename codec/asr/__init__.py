"""Semantic (ASR) feature backends on the codec's 12.5 Hz grid, and `load_asr_features` to pick one by name.

Importing this package is cheap: openai-whisper is imported only when a Whisper backend is built.
"""
from __future__ import annotations

import os

import torch

from codec.asr.base import ASRFeatureExtractor
from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
from codec.asr.whisper_features import WhisperFeatureExtractor

WHISPER_PREFIX = "whisper:"
CTC_PREFIX = "ctc:"


def load_asr_features(spec: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> ASRFeatureExtractor:
    """Build the frozen feature backend named by `spec`, in eval mode on `device`.

    - `None`, `""` or `"ctc"`: the bundled CTC phone recogniser;
    - `"ctc:<path_or_uri>"` or a bare path / hf:// / https:// URI: a CTC recogniser checkpoint;
    - `"whisper:<path_or_uri>"`: a Whisper encoder folder (see `convert_openai_whisper_checkpoint`);
      `"whisper"` alone raises a `CheckpointError` saying how to provide one.
    """
    text = "" if spec is None else os.fspath(spec).strip()
    if text in ("", "ctc"):
        model: ASRFeatureExtractor = CTCPhoneRecognizer.from_pretrained(device=device)
    elif text == "whisper" or text.startswith(WHISPER_PREFIX):
        model = WhisperFeatureExtractor.from_pretrained(text[len(WHISPER_PREFIX):] or None, device=device)
    else:
        path = text[len(CTC_PREFIX):] if text.startswith(CTC_PREFIX) else text
        model = CTCPhoneRecognizer.from_pretrained(path or None, device=device)  # "ctc:" alone: the bundled one
    model.requires_grad_(False)  # type: ignore[attr-defined]  # every backend is a frozen feature source
    return model


__all__ = [
    "ASRFeatureExtractor",
    "CTCPhoneRecognizer",
    "CTCRecognizerConfig",
    "WhisperFeatureExtractor",
    "load_asr_features",
]
