"""`flexitts train asr`: the CTC phone recogniser whose hidden layer is the codec's semantic feature."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
from codec.common.pretrained import config_from_dict
from flexitts.errors import ConfigError
from flexitts.text import PhonemeTable
from flexitts.training.asr_data import ASRDataset, collate_asr
from flexitts.training.config import RunConfig
from flexitts.training.loop import Trainer, TrainResult, seed_everything
from flexitts.training.sampler import BucketBatchSampler

DATA_KEYS = {"train", "valid", "max_seconds", "valid_limit"}


def phone_error_rate(
    model: CTCPhoneRecognizer, dataset: ASRDataset, batch_seconds: float = 120.0
) -> tuple[float, dict[str, float]]:
    """Greedy-CTC phone error rate (edits / reference phones) over `dataset`, overall and per speaker."""
    import jiwer

    model.eval()
    sampler = BucketBatchSampler(dataset.lengths, int(batch_seconds * 16000), seed=0)
    batches = sampler.epoch_batches(0)
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch_indices in batches:
            batch = collate_asr([dataset[i] for i in batch_indices])
            decoded = model.transcribe_ids(batch["wav"].to(device), batch["wav_lengths"].to(device))
            for index, ids in zip(batch_indices, decoded):
                item = dataset[index]
                # Phone ids as "words": jiwer's word error rate over them is the phone error rate.
                refs[item.speaker].append(" ".join(map(str, item.targets)))
                hyps[item.speaker].append(" ".join(map(str, ids)))
    per_speaker = {spk: float(jiwer.wer(refs[spk], hyps[spk])) for spk in sorted(refs)}
    overall = float(jiwer.wer([r for spk in refs for r in refs[spk]], [h for spk in hyps for h in hyps[spk]]))
    return overall, per_speaker


def build_asr_model(run: RunConfig, table: PhonemeTable) -> CTCPhoneRecognizer:
    """The recogniser of the `model` section, with the phoneme table inside."""
    if "symbols" in run.model:
        raise ConfigError("the ASR model's symbols come from the phoneme table; remove model.symbols from the config")
    config = config_from_dict(CTCRecognizerConfig, {**run.model, "symbols": list(table.symbols)}, "model section")
    return CTCPhoneRecognizer(config)


def train_asr(
    run: RunConfig,
    data: str | None = None,
    out_dir: str | None = None,
    init: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (or fine-tune from `init`, or `resume`) the recogniser; returns the result and the final PER."""
    run.check_data_keys(DATA_KEYS, "asr")
    table = PhonemeTable.default()
    train_manifest = run.train_manifest(data)
    max_seconds = float(run.data.get("max_seconds", 20.0))
    train_set = ASRDataset(train_manifest, table, max_seconds)
    valid_set = None
    if run.data.get("valid"):
        valid_set = ASRDataset(run.resolve(run.data["valid"]), table, max_seconds, limit=int(run.data.get("valid_limit", 200)))

    seed_everything(run.training.seed)
    model = build_asr_model(run, table)
    init_state = CTCPhoneRecognizer.from_pretrained(init).state_dict() if init else None

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        if valid_set is None:
            return {}
        per, _ = phone_error_rate(m, valid_set)  # type: ignore[arg-type]
        return {"valid_per": per}

    trainer = Trainer(
        model, train_set, collate_asr, train_set.lengths, run.training, out_dir or run.resolve(run.out_dir), evaluate=evaluate
    )
    result = trainer.fit(resume=resume, progress=progress, init_state=init_state)
    return result, result.metrics
