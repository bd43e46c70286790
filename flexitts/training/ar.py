"""`flexitts train ar`: the token+duration language model on a token cache (`flexitts data tokens`).

Every (utterance, setting) pair of the cache is one example, so a cache built at several thresholds or rates
teaches the rate embedding all of them. With probability `prompt_prob` an example is prefixed by another
utterance of the same speaker under the same setting (text: `ref <sep> text`, speech: ref tokens then the
utterance's), as VALL-E and FlexiCodec train for zero-shot prompting: the model learns to continue a voice.
The pairing is drawn once from the training seed, so a resumed run sees exactly the same examples.

Data section keys:
    train          token cache folder (or --data)
    valid          token cache for teacher-forced accuracies (optional)
    settings       which of the cache's settings to train on (default: all)
    prompt_prob    share of examples with a same-speaker prefix (default 0.5)
    valid_limit    validation examples (default 200)
    valid_generate validation items also generated, to compare token counts (default 0: none)
Model section: `ARConfig` fields, plus `preset: demo|paper` (sizes to start from) and `init: demo|PATH`
(weights to fine-tune from; `--init` overrides; the checkpoint's config is used, updated by the other keys).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ar import ARConfig, ARModel, collate_examples
from ar.config import BASE_FRAME_RATE
from codec.common.checkpoints import is_remote
from codec.common.errors import CheckpointError
from codec.common.pretrained import config_from_dict, init_state_for
from ar import pointer
from flexitts.data.phone_alignment import pointer_skip_symbols, token_progress
from flexitts.data.token_cache import TokenCache
from flexitts.errors import ConfigError, DataError
from flexitts.text import PhonemeTable
from flexitts.training.config import RunConfig
from flexitts.training.loop import Trainer, TrainResult, seed_everything
from flexitts.training.sampler import BucketBatchSampler

DATA_KEYS = {"train", "valid", "settings", "prompt_prob", "valid_limit", "valid_generate"}
MODEL_EXTRA_KEYS = {"preset", "init"}


@dataclass(frozen=True)
class Example:
    """One training sequence: item `index` under `setting`, optionally after item `prefix` (-1: none)."""

    index: int
    setting: str
    prefix: int = -1


class ARTokenDataset:
    """Examples over a token cache; `dataset[i]` is a dict of numpy arrays and the rate (see `collate_ar`).

    Lengths (phonemes + tokens + SOS, RATE, TASK, and `<sep>` with a prefix) come from the cache index, so
    building it reads no item file. Items without phonemes or tokens, and examples longer than the model's
    positions, are left out.
    """

    def __init__(
        self,
        cache: TokenCache,
        model: ARModel,
        settings: Sequence[str] | None = None,
        prompt_prob: float = 0.0,
        seed: int = 0,
        limit: int | None = None,
    ):
        self.cache, self.model = cache, model
        config = model.config
        chosen = list(settings) if settings else list(cache.settings)
        missing = sorted(set(chosen) - set(cache.settings))
        if missing:
            raise ConfigError(f"settings {missing} are not in the token cache '{cache.root}' (it has {cache.settings})")
        rows = cache.rows
        sizes = {(i, s): int(row["phonemes"]) + int(row["tokens"][s]) for i, row in enumerate(rows) for s in chosen}
        by_speaker: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_speaker.setdefault(row["speaker"], []).append(i)
        rng = random.Random(seed * 7919 + 17)
        self.examples: list[Example] = []
        self.lengths: list[int] = []
        limit_units = config.max_positions
        usable = {(i, s) for i, row in enumerate(rows) for s in chosen if int(row["phonemes"]) and int(row["tokens"][s])}
        for i, row in enumerate(rows):
            for setting in chosen:
                size = sizes[(i, setting)] + 3
                if (i, setting) not in usable or size > limit_units:
                    continue
                prefix = -1
                others = [j for j in by_speaker[row["speaker"]] if j != i and (j, setting) in usable]
                if others and rng.random() < prompt_prob:
                    j = others[rng.randrange(len(others))]
                    if size + sizes[(j, setting)] + 1 <= limit_units:
                        prefix = j
                        size += sizes[(j, setting)] + 1
                self.examples.append(Example(i, setting, prefix))
                self.lengths.append(size)
        if limit is not None:
            self.examples, self.lengths = self.examples[:limit], self.lengths[:limit]
        if not self.examples:
            raise DataError(f"token cache '{cache.root}' has no example that fits {limit_units} positions")
        if config.phone_pointer and not cache.aligned:
            raise DataError(f"the phone-pointer AR needs phone onsets in '{cache.root}': run `flexitts data align --cache {cache.root}`")

    def __len__(self) -> int:
        return len(self.examples)

    def _tokens(self, index: int, setting: str) -> tuple[np.ndarray, np.ndarray, int]:
        item = self.cache.item(index)
        codes, durations = item.codes[setting], item.durations[setting]
        config = self.model.config
        if len(codes) == 0 or durations.min() < 1 or durations.max() > config.max_duration or codes.max() >= config.codebook_size:
            raise DataError(
                f"token cache item '{item.id}' ({setting}) has no tokens, durations outside 1..{config.max_duration} "
                f"or codes outside 0..{config.codebook_size - 1}: rebuild the cache with a matching codec"
            )
        return codes, durations, item.frames

    def __getitem__(self, i: int) -> dict[str, Any]:
        example = self.examples[i]
        item = self.cache.item(example.index)
        codes, durations, frames = self._tokens(example.index, example.setting)
        phonemes = [int(p) for p in item.phonemes]
        onsets = item.phone_onsets
        if example.prefix >= 0:
            ref = self.cache.item(example.prefix)
            ref_codes, ref_durations, ref_frames = self._tokens(example.prefix, example.setting)
            phonemes = self.model.join_text(ref.phonemes, phonemes)
            codes = np.concatenate([ref_codes, codes])
            durations = np.concatenate([ref_durations, durations])
            if onsets is not None and ref.phone_onsets is not None:
                onsets = np.concatenate([ref.phone_onsets, onsets + ref_frames])
            frames += ref_frames
        if max(phonemes) >= len(self.model.config.symbols):
            raise DataError(f"token cache item '{item.id}' has phoneme ids beyond this model's table of {len(self.model.config.symbols)}")
        example_dict = {"phonemes": phonemes, "codes": codes, "durations": durations,
                        "rate": len(codes) * BASE_FRAME_RATE / frames, "speaker": item.speaker, "index": example.index}
        if self.model.config.phone_pointer:
            spoken = pointer.spoken_phones(phonemes, self.model.config)
            if onsets is None or len(onsets) != len(spoken):
                raise DataError(f"token cache item '{item.id}' has no phone onsets for its text: re-run `flexitts data align`")
            example_dict["spoken"], example_dict["progress"] = spoken, token_progress(durations, onsets)
        return example_dict


def collate_ar(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Examples -> a padded batch for `ARModel.training_step`."""
    pointer_rows = ([x["spoken"] for x in items], [x["progress"] for x in items]) if "spoken" in items[0] else (None, None)
    return collate_examples(
        [x["phonemes"] for x in items], [x["codes"] for x in items], [x["durations"] for x in items], [x["rate"] for x in items],
        *pointer_rows,
    )


# -- evaluation ----------------------------------------------------------------------------------------------
def teacher_forced_accuracy(model: ARModel, dataset: ARTokenDataset, max_units: int = 4000) -> dict[str, float]:
    """Teacher-forced top-1 code (EOS included) and duration accuracies and mean NLLs over `dataset`."""
    model.eval()
    device = next(model.parameters()).device
    totals: dict[str, float] = {}
    for indices in BucketBatchSampler(dataset.lengths, max_units, seed=0).epoch_batches(0):
        batch = {k: v.to(device) for k, v in collate_ar([dataset[i] for i in indices]).items()}
        for key, value in model.teacher_forced_metrics(batch).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    extra = {"adv_acc": totals["adv_correct"] / max(1.0, totals["adv_total"])} if "adv_total" in totals else {}
    return {**extra,
        "code_acc": totals["code_correct"] / max(1.0, totals["code_total"]),
        "dur_acc": totals["dur_correct"] / max(1.0, totals["dur_total"]),
        "code_nll": totals["code_nll"] / max(1.0, totals["code_total"]),
        "dur_nll": totals["dur_nll"] / max(1.0, totals["dur_total"]),
    }


def generated_length_ratio(model: ARModel, cache: TokenCache, setting: str, count: int, seed: int = 0,
                           **sampling: Any) -> dict[str, float]:
    """Generate `count` items of `cache` (each prompted by another utterance of its speaker, at the prompt's
    rate) and compare with the ground truth: mean ratio of token counts and its mean |ratio - 1|, and the same
    for the frames the speech covers (`gen_frame_ratio`, `gen_frame_error`). `sampling` goes to `generate`
    (e.g. `pace`, `duration_top_k`); by default the model's own EOS and greedy durations decide."""
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = {}
    for i, row in enumerate(cache.rows):
        by_speaker.setdefault(row["speaker"], []).append(i)
    ratios: list[float] = []
    frame_ratios: list[float] = []
    chosen = [i for i in range(len(cache)) if len(by_speaker[cache.rows[i]["speaker"]]) > 1][:count]
    for start in range(0, len(chosen), 8):
        group = chosen[start : start + 8]
        prompts = [rng.choice([j for j in by_speaker[cache.rows[i]["speaker"]] if j != i]) for i in group]
        out = model.generate(
            [cache.item(i).phonemes.tolist() for i in group],
            prompt_codes=[cache.item(j).codes[setting].tolist() for j in prompts],
            prompt_durations=[cache.item(j).durations[setting].tolist() for j in prompts],
            prompt_phonemes=[cache.item(j).phonemes.tolist() for j in prompts],
            prompt_onsets=[cache.item(j).phone_onsets for j in prompts] if model.config.phone_pointer else None,
            seed=seed, **sampling,
        )
        for k, i in enumerate(group):
            codes, durations = out.item(k)
            item = cache.item(i)
            ratios.append(len(codes) / len(item.codes[setting]))
            frame_ratios.append(int(durations.sum()) / item.frames)
    if not ratios:
        return {}
    return {"gen_len_ratio": float(np.mean(ratios)), "gen_len_error": float(np.mean([abs(r - 1) for r in ratios])),
            "gen_frame_ratio": float(np.mean(frame_ratios)),
            "gen_frame_error": float(np.mean([abs(r - 1) for r in frame_ratios]))}


# -- building ------------------------------------------------------------------------------------------------
def build_ar_model(run: RunConfig, init: str | None) -> tuple[ARModel, dict[str, torch.Tensor] | None]:
    """The model of the `model` section (or of the `init` checkpoint, updated by that section) and the weights
    to start from (None: random)."""
    section = dict(run.model)
    if section.get("phone_pointer") and "pointer_skip" not in section:
        section["pointer_skip"] = pointer_skip_symbols(PhonemeTable.default().symbols)
    preset = section.pop("preset", None)
    config_init = section.pop("init", None)
    if "symbols" in section:
        raise ConfigError("the AR model's symbols come from the phoneme table (or the init checkpoint); remove model.symbols")
    # --init is relative to the working folder, model.init to the config file; "demo" is the bundled model.
    source: str | Path | None = init or config_init
    if source is not None and not init and str(source) != "demo" and not is_remote(str(source)):
        source = run.resolve(source)
    init_state = None
    if source is not None:
        pretrained = ARModel.from_pretrained(None if str(source) == "demo" else source)
        if preset:
            raise ConfigError("model.preset cannot be combined with init: the checkpoint fixes the model's sizes")
        config = config_from_dict(ARConfig, {**dataclasses.asdict(pretrained.config), **section}, "model section")
        model = ARModel(config)
        try:  # modules the section adds (the phone pointer) keep their fresh initialisation
            init_state = init_state_for(model, pretrained.state_dict(), "the init checkpoint")
        except CheckpointError:
            raise ConfigError("model section changes sizes of the init checkpoint: only non-shape fields (dropout, losses)"
                              " may differ, or modules be added (phone_pointer)") from None
        model.load_state_dict(init_state)
        return model, init_state
    symbols = list(PhonemeTable.default().symbols)
    if preset is not None:
        if preset not in ("demo", "paper"):
            raise ConfigError(f"model.preset must be demo or paper, not '{preset}'")
        base = dataclasses.asdict(getattr(ARConfig, preset)(symbols))
    else:
        base = {"symbols": symbols}
    return ARModel(config_from_dict(ARConfig, {**base, **section}, "model section")), None


def _open_cache(path: Path, what: str) -> TokenCache:
    if not path.is_dir():
        raise ConfigError(f"{what} token cache '{path}' not found: build one with `flexitts data tokens --manifest M --out DIR`")
    return TokenCache(path)


def train_ar(
    run: RunConfig,
    data: str | None = None,
    out_dir: str | None = None,
    init: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (or fine-tune from `init`, or `resume`) the AR model; returns the result and the final metrics."""
    run.check_data_keys(DATA_KEYS, "ar")
    train_path = Path(data) if data else run.resolve(run.data.get("train", ""))
    if not run.data.get("train") and not data:
        raise ConfigError("no training data: pass --data DIR (a token cache) or set data.train in the config")
    train_cache = _open_cache(train_path, "training")
    settings = run.data.get("settings")
    if isinstance(settings, str):
        settings = [settings]
    prompt_prob = float(run.data.get("prompt_prob", 0.5))
    if not 0 <= prompt_prob <= 1:
        raise ConfigError(f"data.prompt_prob must be in [0, 1], not {prompt_prob}")

    seed_everything(run.training.seed)
    model, init_state = build_ar_model(run, init)
    train_set = ARTokenDataset(train_cache, model, settings, prompt_prob, seed=run.training.seed)

    valid_set = valid_cache = None
    if run.data.get("valid"):
        valid_cache = _open_cache(run.resolve(run.data["valid"]), "validation")
        valid_set = ARTokenDataset(valid_cache, model, settings, 0.0, limit=int(run.data.get("valid_limit", 200)))
    valid_generate = int(run.data.get("valid_generate", 0))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        if valid_set is None:
            return {}
        metrics = {f"valid_{k}": v for k, v in teacher_forced_accuracy(m, valid_set).items()}  # type: ignore[arg-type]
        if valid_generate and valid_cache is not None:
            per_setting = {s: generated_length_ratio(m, valid_cache, s, valid_generate) for s in (settings or valid_cache.settings)}  # type: ignore[arg-type]
            per_setting = {s: v for s, v in per_setting.items() if v}
            for key in ("gen_len_ratio", "gen_len_error"):
                if per_setting:
                    metrics[f"valid_{key}"] = float(np.mean([v[key] for v in per_setting.values()]))
                metrics.update({f"valid_{key}_{s}": v[key] for s, v in per_setting.items()})
        return metrics

    trainer = Trainer(model, train_set, collate_ar, train_set.lengths, run.training, out_dir or run.resolve(run.out_dir), evaluate=evaluate)
    result = trainer.fit(resume=resume, progress=progress, init_state=init_state)
    return result, result.metrics
