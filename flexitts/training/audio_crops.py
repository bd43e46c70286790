"""Waveform training data for the codec and the vocoder (random frame-aligned crops of manifest audio), and the
training entry both share (`train_on_crops`).

Utterances are held in memory as int16 (3 h of 16 kHz speech is about 350 MB). A crop starts on a 12.5 Hz
frame boundary (a multiple of 1280 samples) so the codec's frames and the ASR features line up with the
utterance's own; shorter utterances are used whole. Crop offsets come from torch's global generator, whose
state the Trainer checkpoints, so a resumed run draws the same crops.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from codec.framing import HOP_SAMPLES
from flexitts.data.manifest import read_manifest
from flexitts.errors import DataError


class AudioCropDataset:
    """`dataset[i]` -> int16 samples `[S]` (S <= crop_samples) of utterance `i`, at a random frame-aligned offset.

    Args:
        manifest: JSON Lines manifest (paths relative to it).
        crop_seconds: crop length, rounded down to whole 80 ms frames.
        max_items: keep only the first `max_items` utterances (None: all).
        min_seconds: skip utterances shorter than this.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        crop_seconds: float = 2.56,
        max_items: int | None = None,
        min_seconds: float = 0.5,
        sample_rate: int = 16000,
        progress: Callable[[int, int], None] | None = None,
    ):
        from flexitts.audio import load_audio

        path = Path(manifest)
        rows = [u for u in read_manifest(path) if u.duration is None or u.duration >= min_seconds][:max_items]
        self.crop = max(HOP_SAMPLES, int(crop_seconds * sample_rate) // HOP_SAMPLES * HOP_SAMPLES)
        self.items: list[np.ndarray] = []
        self.speakers: list[str] = []
        for number, utt in enumerate(rows):
            wav, _ = load_audio(utt.resolve(path.parent), target_rate=sample_rate)
            self.items.append((wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy())
            self.speakers.append(utt.speaker)
            if progress is not None:
                progress(number + 1, len(rows))
        if not self.items:
            raise DataError(f"'{path}' has no utterance of at least {min_seconds} s")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> list[int]:
        """Size of each item's crop in samples (the batch budget's unit)."""
        return [min(self.crop, len(x)) for x in self.items]

    def __getitem__(self, index: int) -> np.ndarray:
        samples = self.items[index]
        spare_frames = (len(samples) - self.crop) // HOP_SAMPLES
        if spare_frames <= 0:
            return samples[: self.crop]
        start = int(torch.randint(0, spare_frames + 1, ())) * HOP_SAMPLES
        return samples[start : start + self.crop]


def collate_waveforms(items: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Pad int16 crops into `wav [B, S]` float in [-1, 1] and `wav_lengths [B]`."""
    lengths = torch.tensor([len(x) for x in items])
    wav = torch.zeros(len(items), int(lengths.max()))
    for row, samples in enumerate(items):
        wav[row, : len(samples)] = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    return {"wav": wav, "wav_lengths": lengths}


CROP_DATA_KEYS = {"train", "valid", "crop_seconds", "max_items", "valid_limit"}


def train_on_crops(
    run: Any,
    name: str,
    model_class: Any,
    config: Any,
    metrics: Callable[[Any, "AudioCropDataset"], dict[str, float]],
    data: str | None,
    out_dir: str | None,
    init: str | None,
    resume: bool,
    progress: bool,
    default_crop_seconds: float,
) -> tuple[Any, dict[str, Any]]:
    """The training entry shared by waveform generators (codec, vocoder): crops of the manifest's audio, the
    model built from `config` (or fine-tuned from `init`), a discriminator when `config.use_gan`, and
    `metrics(model, valid_set)` on the `valid` manifest."""
    from codec.common.pretrained import init_state_for
    from flexitts.training.loop import Trainer, seed_everything

    run.check_data_keys(CROP_DATA_KEYS, name)
    rate = int(getattr(getattr(config, "mel", None), "sample_rate", 16000))
    crop = float(run.data.get("crop_seconds", default_crop_seconds))
    train_set = AudioCropDataset(run.train_manifest(data), crop, max_items=run.data.get("max_items"), sample_rate=rate)
    valid_set = None
    if run.data.get("valid"):
        valid_set = AudioCropDataset(run.resolve(run.data["valid"]), crop, max_items=int(run.data.get("valid_limit", 32)),
                                     sample_rate=rate)
    seed_everything(run.training.seed)
    model = model_class(config)
    init_state = init_state_for(model, model_class.from_pretrained(init).state_dict(), str(init)) if init else None
    discriminator = model.build_discriminator() if config.use_gan else None

    def evaluate(m: Any) -> dict[str, float]:
        return metrics(m, valid_set) if valid_set is not None else {}

    trainer = Trainer(model, train_set, collate_waveforms, train_set.lengths, run.training,
                      out_dir or run.resolve(run.out_dir), evaluate=evaluate, discriminator=discriminator)
    result = trainer.fit(resume=resume, progress=progress, init_state=init_state)
    return result, result.metrics
