"""`flexitts train codec`: the dynamic-rate codec on random frame-aligned crops of a manifest's audio.

Generator losses come from `FlexiCodec.training_step` (multi-scale mel, VQ, feature alignment, and GAN terms
once `gan_start_step` is reached); with `model.use_gan` the Trainer also steps the discriminator.
"""
from __future__ import annotations

from typing import Any

import torch

from codec.config import FlexiCodecConfig
from codec.model import FlexiCodec
from flexitts.training.audio_crops import AudioCropDataset, collate_waveforms, train_on_crops
from flexitts.training.config import RunConfig
from flexitts.training.loop import TrainResult
from flexitts.training.sampler import BucketBatchSampler



def reconstruction_metrics(model: FlexiCodec, dataset: AudioCropDataset, batch_seconds: float = 60.0) -> dict[str, float]:
    """Multi-scale mel L1 of the codec's reconstruction at its default threshold, and the frame rate."""
    model.eval()
    sampler = BucketBatchSampler(dataset.lengths, int(batch_seconds * 16000), seed=0)
    total, rate, count = 0.0, 0.0, 0
    with torch.no_grad():
        for indices in sampler.epoch_batches(0):
            batch = collate_waveforms([dataset.items[i][: dataset.crop] for i in indices])
            tokens = model.encode(batch["wav"], 16000, wav_lengths=batch["wav_lengths"])
            wav = model.decode(tokens)
            target = torch.nn.functional.pad(batch["wav"], (0, max(0, wav.shape[1] - batch["wav"].shape[1])))[:, : wav.shape[1]]
            total += float(model.mel_loss(wav, target, batch["wav_lengths"])) * len(indices)
            rate += float(tokens.frame_rate.sum())
            count += len(indices)
    model.train()
    return {"valid_mel": total / max(1, count), "valid_frame_rate": rate / max(1, count)}


def train_codec(
    run: RunConfig,
    data: str | None = None,
    out_dir: str | None = None,
    init: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (or fine-tune from `init`, or `resume`) the codec; returns the result and final metrics."""
    return train_on_crops(run, "codec", FlexiCodec, run.model_config(FlexiCodecConfig), reconstruction_metrics, data, out_dir, init, resume, progress,
                          default_crop_seconds=2.56)
