"""`flexitts train vocoder`: the Vocos vocoder on random frame-aligned crops of a manifest's audio.

Generator losses come from `Vocoder.training_step` (multi-scale mel L1, and LSGAN + feature matching once
`gan_start_step` is reached); with `model.use_gan` the Trainer also steps the discriminator.

Data section keys:
    train         training manifest (or --data)
    valid         manifest for a validation copy-synthesis mel distance (optional)
    crop_seconds  crop length (default 1.28)
    max_items     use only the first N utterances (default: all)
    valid_limit   validation utterances (default 32)
Model section: `VocoderConfig` fields (`mel` as a mapping of `MelConfig` fields), plus `preset: demo|paper`.
"""
from __future__ import annotations

from typing import Any

import torch

from flexitts.training.audio_crops import AudioCropDataset, collate_waveforms, train_on_crops
from flexitts.training.config import RunConfig
from flexitts.training.loop import TrainResult
from flexitts.training.sampler import BucketBatchSampler
from nar.vocoder import Vocoder, VocoderConfig



def copy_synthesis_metrics(model: Vocoder, dataset: AudioCropDataset, batch_seconds: float = 60.0) -> dict[str, float]:
    """Multi-scale mel L1 between the crops (their first `crop` samples) and their copy-synthesis."""
    was_training = model.training
    model.eval()
    rate = model.sample_rate
    sampler = BucketBatchSampler(dataset.lengths, int(batch_seconds * rate), seed=0)
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in sampler.epoch_batches(0):
            batch = collate_waveforms([dataset.items[i][: dataset.crop] for i in indices])
            wav, lengths = batch["wav"].to(model.device), batch["wav_lengths"].to(model.device)
            out = model.copy_synthesis(wav, lengths)
            total += float(model.mel_loss(out, wav, lengths)) * len(indices)
            count += len(indices)
    model.train(was_training)
    return {"valid_mel": total / max(1, count)}


def train_vocoder(
    run: RunConfig,
    data: str | None = None,
    out_dir: str | None = None,
    init: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (or fine-tune from `init`, or `resume`) the vocoder; returns the result and final metrics."""
    return train_on_crops(run, "vocoder", Vocoder, run.model_config(VocoderConfig), copy_synthesis_metrics, data, out_dir, init, resume, progress,
                          default_crop_seconds=1.28)
