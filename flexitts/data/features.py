"""Semantic (ASR) features of a manifest's utterances, computed in length-sorted batches."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from codec.asr.base import ASRFeatureExtractor
from flexitts.data.manifest import read_manifest


@torch.no_grad()
def manifest_features(
    manifest: str | os.PathLike,
    extractor: ASRFeatureExtractor,
    limit: int | None = None,
    batch_seconds: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """`{utterance id: [T, D] features at 12.5 Hz}` for the first `limit` rows of `manifest`.

    The id is the row's `id` field, else its audio path. Utterances are batched by length (padding never
    changes an extractor's result, so batching only saves time).
    """
    from flexitts.audio import load_audio
    from flexitts.training.sampler import BucketBatchSampler

    path = Path(manifest)
    rows = read_manifest(path)[:limit]
    wavs = [load_audio(row.resolve(path.parent), target_rate=extractor.sample_rate)[0] for row in rows]
    ids = [str(row.extra.get("id", row.audio)) for row in rows]
    batches = BucketBatchSampler([w.shape[0] for w in wavs], int(batch_seconds * extractor.sample_rate)).epoch_batches(0)
    result: dict[str, torch.Tensor] = {}
    for number, batch in enumerate(batches, start=1):
        lengths = torch.tensor([wavs[i].shape[0] for i in batch])
        padded = torch.nn.utils.rnn.pad_sequence([wavs[i] for i in batch], batch_first=True)
        feats, feat_lengths = extractor.extract(padded, lengths)
        for row, i in enumerate(batch):
            result[ids[i]] = feats[row, : feat_lengths[row]].clone()
        if progress is not None:
            progress(number, len(batches))
    return {i: result[i] for i in ids}
