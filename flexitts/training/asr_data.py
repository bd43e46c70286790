"""Data for the CTC phone recogniser: manifest utterances as 16 kHz waveforms with phone-id targets.

CTC targets are the phones alone: stress marks, word boundaries and punctuation are not reliably audible,
and dropping them keeps the targets (about 11 a second) well under the encoder's 25 frames a second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from flexitts.data.manifest import Utterance, read_manifest
from flexitts.errors import DataError
from flexitts.text import PhonemeTable, phonemize_batch, phones_only


def phonemize_utterances(utterances: Sequence[Utterance]) -> list[list[str]]:
    """Phonemes of each utterance's text, in the language its row names (`language`, default en-us)."""
    by_language: dict[str, list[int]] = {}
    for index, utt in enumerate(utterances):
        by_language.setdefault(str(utt.extra.get("language", "en-us")), []).append(index)
    result: list[list[str]] = [[] for _ in utterances]
    for language, indices in by_language.items():
        for index, symbols in zip(indices, phonemize_batch([utterances[i].text for i in indices], language)):
            result[index] = symbols
    return result


@dataclass
class ASRItem:
    """One utterance: int16 samples at 16 kHz (kept compact in memory) and phone ids."""

    samples: np.ndarray
    targets: list[int]
    speaker: str


class ASRDataset:
    """A manifest loaded into memory for CTC training and evaluation (items longer than `max_seconds` skipped)."""

    def __init__(
        self,
        manifest: str | os.PathLike,
        table: PhonemeTable,
        max_seconds: float = 20.0,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        from flexitts.audio import load_audio

        path = Path(manifest)
        rows = [u for u in read_manifest(path) if u.duration is None or u.duration <= max_seconds][:limit]
        phones = phonemize_utterances(rows)
        self.items: list[ASRItem] = []
        for number, (utt, symbols) in enumerate(zip(rows, phones)):
            wav, _ = load_audio(utt.resolve(path.parent), target_rate=16000)
            targets = table.encode(phones_only(symbols))
            if targets:
                pcm = (wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
                self.items.append(ASRItem(pcm, targets, utt.speaker))
            if progress is not None:
                progress(number + 1, len(rows))
        if not self.items:
            raise DataError(f"'{path}' has no usable utterance (all longer than {max_seconds} s or without phones)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ASRItem:
        return self.items[index]

    @property
    def lengths(self) -> list[int]:
        return [item.samples.shape[0] for item in self.items]


def collate_asr(items: Sequence[ASRItem]) -> dict[str, torch.Tensor]:
    """Pad a list of items into `wav [B, S]`, `wav_lengths [B]`, `targets [B, L]`, `target_lengths [B]`."""
    wav_lengths = torch.tensor([item.samples.shape[0] for item in items])
    target_lengths = torch.tensor([len(item.targets) for item in items])
    wav = torch.zeros(len(items), int(wav_lengths.max()))
    targets = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.long)
    for row, item in enumerate(items):
        wav[row, : item.samples.shape[0]] = torch.from_numpy(item.samples.astype(np.float32) / 32768.0)
        targets[row, : len(item.targets)] = torch.tensor(item.targets)
    return {"wav": wav, "wav_lengths": wav_lengths, "targets": targets, "target_lengths": target_lengths}
