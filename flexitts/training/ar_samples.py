"""Teacher-forced AR samples for NAR training (`flexitts data ar-samples`).

At inference the NAR renders the AR's codes, and a small AR's codes are mostly not the codec's (the demo AR's
teacher-forced top-1 accuracy is about 11%), yet close to them in the ways its errors run. A NAR trained only on
the codec's codes trusts them; one that also sees the AR's own mistakes learns to lean on the text's phones where
the codes are off. This module draws those mistakes: every (utterance, setting) of a token cache goes through the
AR teacher-forced, after another utterance of the same speaker as its prompt (as at inference), and each code is
sampled from the AR's distribution at its position (top-k, temperature; never EOS). Durations are the cache's,
so the samples line up with the audio.

    DIR/ar_samples.npz   one int16 array `[G]` per `ITEM_ID/SETTING`, plus `_meta` (JSON: the AR checkpoint, top_k,
                         temperature, seed, settings), written atomically
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ar import ARModel
from ar.sampling import sample_from_logits
from flexitts.data.token_cache import TokenCache
from flexitts.errors import DataError
from flexitts.fileio import atomic_path
from flexitts.training.sampler import BucketBatchSampler

SAMPLES_FILE = "ar_samples.npz"


def sample_key(item_id: str, setting: str) -> str:
    return f"{item_id}/{setting}"


@torch.no_grad()
def sample_ar_codes(
    cache: TokenCache,
    model: ARModel,
    settings: Sequence[str] | None = None,
    top_k: int = 5,
    temperature: float = 1.0,
    seed: int = 0,
    max_units: int = 6000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """`{ITEM_ID/SETTING: codes [G]}`: each cached code re-drawn from the AR given the true past (see the module
    docstring). Examples longer than the model's positions keep their prompt-free form or, failing that, are
    left out (the NAR then trains on the codec's codes for them)."""
    from flexitts.training.ar import ARTokenDataset, collate_ar

    model.eval()
    device = next(model.parameters()).device
    dataset = ARTokenDataset(cache, model, settings, prompt_prob=1.0, seed=seed)
    eos = model.config.eos_id
    generator = torch.Generator().manual_seed(seed)
    batches = list(BucketBatchSampler(dataset.lengths, max_units, seed=0).epoch_batches(0))
    samples: dict[str, np.ndarray] = {}
    done = 0
    for indices in batches:
        items = [dataset[i] for i in indices]
        batch = {k: v.to(device) for k, v in collate_ar(items).items()}
        out = model.teacher_forced_outputs(batch)
        logits = out["code_logits"].float()
        logits[:, eos] = float("-inf")
        uniforms = torch.rand(logits.shape[0], generator=generator)
        drawn = sample_from_logits(logits, uniforms.to(logits.device), temperature, top_k).cpu().numpy()
        # Rows are the valid positions item by item: each item's codes then its EOS position.
        counts = (batch["code_lengths"] + 1).cpu().numpy()
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for row, i in enumerate(indices):
            example = dataset.examples[i]
            index_row = cache.rows[example.index]
            own = int(index_row["tokens"][example.setting])
            end = starts[row] + counts[row] - 1  # the EOS position is not a code
            samples[sample_key(index_row["id"], example.setting)] = drawn[end - own : end].astype(np.int16)
        done += len(indices)
        if progress is not None:
            progress(done, len(dataset))
    return samples


def make_ar_samples(cache_dir: str | Path, model: ARModel, checkpoint: str, settings: Sequence[str] | None = None,
                    top_k: int = 5, temperature: float = 1.0, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Path, int]:
    """Sample a token cache's codes with `model` (named `checkpoint` in the file's meta) and write them into the
    cache folder; returns the file and the number of sequences."""
    cache = TokenCache(cache_dir)
    samples = sample_ar_codes(cache, model, settings, top_k, temperature, seed, progress=progress)
    meta = {"checkpoint": checkpoint, "top_k": top_k, "temperature": temperature, "seed": seed,
            "settings": list(settings or cache.settings)}
    return write_ar_samples(cache_dir, samples, meta), len(samples)


def write_ar_samples(root: str | Path, samples: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write `samples` (and `meta`) into the cache folder `root` atomically; returns the file."""
    target = Path(root) / SAMPLES_FILE
    arrays = {**samples, "_meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return target


def read_ar_samples(path: str | Path) -> dict[str, np.ndarray]:
    """The `{ITEM_ID/SETTING: codes [G]}` of an `ar_samples.npz` (a file, or a cache folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / SAMPLES_FILE
    if not path.is_file():
        raise DataError(f"no AR samples at '{path}': make them with `flexitts data ar-samples --cache DIR`")
    with np.load(path) as data:
        return {key: data[key].astype(np.int64) for key in data.files if key != "_meta"}
