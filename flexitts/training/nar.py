"""`flexitts train nar`: the Voicebox flow-matching model on a token cache (`flexitts data tokens`) and its audio.

Each example is one cached utterance with the codes and durations of one of the cache's settings (drawn per
example from torch's global generator, which the Trainer checkpoints, so a resumed run draws the same ones):
a cache built at several thresholds or rates teaches the NAR every merging regime. The mel target is computed
from the waveform inside `Voicebox.training_step` (on the training device). Utterances longer than
`max_seconds` are cut to a random window of whole tokens, so codes and mel frames stay aligned.

Data section keys:
    train        token cache folder (or --data)
    valid        token cache for a validation flow loss (optional)
    settings     which of the cache's settings to train on (default: all)
    max_seconds  longest training window (default 12)
    max_items    use only the first N utterances (default: all)
    valid_limit  validation utterances (default 64)
    ar_samples   an AR's teacher-forced samples of the cache's codes (`flexitts data ar-samples`; a file, or
                 `cache` for the train cache's own `ar_samples.npz`): examples carry them as `ar_codes`, which
                 the model swaps in for `model.ar_code_prob` of its items with phones
Model section: `VoiceboxConfig` fields (`mel` as a mapping of `MelConfig` fields), plus `preset: demo|paper`
(the sizes to start from).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from codec.common.pretrained import init_state_for
from flexitts.data.phone_alignment import phone_subframes, spoken_positions
from flexitts.data.token_cache import TokenCache
from flexitts.text import PhonemeTable
from flexitts.errors import ConfigError, DataError
from flexitts.training.ar_samples import read_ar_samples, sample_key
from flexitts.training.config import RunConfig
from flexitts.training.loop import Trainer, TrainResult, seed_everything
from flexitts.training.sampler import BucketBatchSampler
from nar.config import VoiceboxConfig
from nar.mel import MelConfig
from nar.model import Voicebox

DATA_KEYS = {"train", "valid", "settings", "max_seconds", "max_items", "valid_limit", "ar_samples"}


class NARDataset:
    """Token-cache utterances with their audio: `dataset[i]` -> dict of int16 `wav [S]`, `codes [G]`, `durations [G]`,
    with `phones` the aligned phone ids `phones [2 * sum(durations)]` (`phone_subframes`), and with `ar_samples`
    (`{ITEM_ID/SETTING: codes [G]}`, `flexitts.training.ar_samples`) `ar_codes [G]` (the codec's codes where an
    utterance has no sample).

    Audio is loaded once at `mel.sample_rate` and kept as int16; each utterance is trimmed or zero-padded so that
    its mel has exactly `frames_per_base * frames` frames (`frames` = the cache's 12.5 Hz count).
    """

    def __init__(self, cache: TokenCache, mel: MelConfig, settings: Sequence[str] | None = None,
                 max_seconds: float = 12.0, limit: int | None = None, phones: bool = False,
                 ar_samples: dict[str, np.ndarray] | None = None):
        from flexitts.audio import load_audio

        if phones and not cache.aligned:
            raise DataError(f"a phone-conditioned NAR needs phone onsets in '{cache.root}': run `flexitts data align --cache {cache.root}`")
        self.cache, self.mel, self.phones, self.ar_samples = cache, mel, phones, ar_samples
        chosen = list(settings) if settings else list(cache.settings)
        missing = sorted(set(chosen) - set(cache.settings))
        if missing or not chosen:
            raise ConfigError(f"settings {missing or chosen} are not in the token cache '{cache.root}' (it has {cache.settings})")
        self.settings = chosen
        self.max_frames = max(1, int(max_seconds * 12.5))  # 12.5 Hz base frames per training window
        count = len(cache) if limit is None else min(limit, len(cache))
        self.indices = list(range(count))
        self.audio: list[np.ndarray] = []
        base = mel.base_samples
        for index in self.indices:
            item = cache.item(index)
            wav, _ = load_audio(item.audio, target_rate=mel.sample_rate)
            wav = wav[: item.frames * base]
            need = (item.frames - 1) * base + 1  # the fewest samples that still give `frames` base frames
            if wav.shape[0] < need:
                wav = torch.nn.functional.pad(wav, (0, need - wav.shape[0]))
            self.audio.append((wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy())
        if not self.audio:
            raise DataError(f"token cache '{cache.root}' has no items")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def lengths(self) -> list[int]:
        """Samples of each example's window (the batch budget's unit)."""
        cap = self.max_frames * self.mel.base_samples
        return [min(cap, len(a)) for a in self.audio]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        item = self.cache.item(self.indices[i])
        setting = self.settings[int(torch.randint(0, len(self.settings), ()))] if len(self.settings) > 1 else self.settings[0]
        codes, durations = np.asarray(item.codes[setting], np.int64), np.asarray(item.durations[setting], np.int64)
        if len(codes) == 0 or int(durations.sum()) != item.frames or durations.min() < 1:
            raise DataError(f"token cache item '{item.id}' ({setting}): durations do not cover its {item.frames} frames")
        ar_codes = None
        if self.ar_samples is not None:
            ar_codes = self.ar_samples.get(sample_key(item.id, setting), codes)
            if len(ar_codes) != len(codes):
                raise DataError(f"the AR samples of '{item.id}' ({setting}) do not match its {len(codes)} codes: "
                                "remake them with `flexitts data ar-samples` for this cache")
        wav = self.audio[i]
        base = self.mel.base_samples
        phones = None
        if self.phones:
            symbols = PhonemeTable.default().symbols
            spoken = item.phonemes[spoken_positions(item.phonemes, symbols)]
            phones = phone_subframes(spoken, item.phone_onsets, item.frames)
        if item.frames > self.max_frames:
            # A random window of whole tokens, at most max_frames long: it starts on a token from which a full
            # max_frames window still fits (token 0 always does), and takes every token that fits after it.
            ends = np.cumsum(durations)
            starts = ends - durations
            candidates = np.nonzero(starts <= item.frames - self.max_frames)[0]
            first = int(candidates[int(torch.randint(0, len(candidates), ()))])
            fits = ends - starts[first] <= self.max_frames
            last = max(first, int(np.nonzero(fits)[0].max()))
            codes, durations = codes[first : last + 1], durations[first : last + 1]
            if ar_codes is not None:
                ar_codes = ar_codes[first : last + 1]
            if phones is not None:
                phones = phones[2 * int(starts[first]) : 2 * int(ends[last])]
            lo, hi = int(starts[first]) * base, int(ends[last]) * base
            wav = wav[lo : min(hi, len(wav))]
            frames = int(durations.sum())
            if len(wav) < (frames - 1) * base + 1:
                wav = np.pad(wav, (0, (frames - 1) * base + 1 - len(wav)))
        example = {"wav": wav, "codes": codes, "durations": durations}
        if phones is not None:
            example["phones"] = phones
        if ar_codes is not None:
            example["ar_codes"] = np.asarray(ar_codes, np.int64)
        return example


def collate_nar(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad examples into `wav [B, S]` (float in [-1, 1]), `wav_lengths [B]`, `codes [B, G]`, `durations [B, G]`
    (and `phones [B, 2 * max frames]`, `ar_codes [B, G]` when the examples have them); integer rows are 0-padded."""
    wav_lengths = torch.tensor([len(x["wav"]) for x in items])
    wav = torch.zeros(len(items), int(wav_lengths.max()))
    for row, x in enumerate(items):
        wav[row, : len(x["wav"])] = torch.from_numpy(x["wav"].astype(np.float32) / 32768.0)
    batch = {"wav": wav, "wav_lengths": wav_lengths}
    for key in ("codes", "durations", "ar_codes", "phones"):
        if key in items[0]:
            padded = torch.zeros(len(items), max(len(x[key]) for x in items), dtype=torch.long)
            for row, x in enumerate(items):
                padded[row, : len(x[key])] = torch.from_numpy(np.asarray(x[key], np.int64))
            batch[key] = padded
    return batch


def validation_loss(model: Voicebox, dataset: NARDataset, max_units: int, seed: int = 0) -> float:
    """Mean flow-matching loss over `dataset` with fixed noise, times, prompts and condition drops (the global RNG
    is restored afterwards, so training draws what it would have drawn)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for indices in BucketBatchSampler(dataset.lengths, max_units, seed=0).epoch_batches(0):
            out = model.training_step(collate_nar([dataset[i] for i in indices]))
            total += float(out["flow"]) * len(indices)
            count += len(indices)
    model.train(was_training)
    return total / max(1, count)


def train_nar(
    run: RunConfig,
    data: str | None = None,
    out_dir: str | None = None,
    init: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (or fine-tune from `init`, or `resume`) the NAR; returns the result and the final validation loss."""
    run.check_data_keys(DATA_KEYS, "nar")
    source = data or run.data.get("train")
    if not source:
        raise ConfigError("no token cache: pass --data or set data.train in the config (build it with `flexitts data tokens`)")
    cache = TokenCache(data if data else run.resolve(source))
    config = run.model_config(VoiceboxConfig)
    max_seconds = float(run.data.get("max_seconds", 12.0))
    settings = run.data.get("settings")
    phones = bool(config.num_phones)
    if phones and config.num_phones < len(PhonemeTable.default().symbols):
        raise ConfigError(f"model.num_phones must cover the phoneme table ({len(PhonemeTable.default().symbols)} symbols)")
    samples_source = run.data.get("ar_samples")
    ar_samples = None
    if samples_source:
        ar_samples = read_ar_samples(cache.root if samples_source == "cache" else run.resolve(samples_source))
    if config.ar_code_prob > 0 and (ar_samples is None or not phones):
        raise ConfigError("model.ar_code_prob needs phones (model.num_phones) and data.ar_samples (make them with "
                          "`flexitts data ar-samples --cache DIR`)")
    train_set = NARDataset(cache, config.mel, settings, max_seconds, run.data.get("max_items"), phones, ar_samples)
    valid_set = None
    if run.data.get("valid"):
        valid_set = NARDataset(TokenCache(run.resolve(run.data["valid"])), config.mel, settings, max_seconds,
                               int(run.data.get("valid_limit", 64)), phones)

    seed_everything(run.training.seed)
    model = Voicebox(config)
    # A checkpoint without a module this config adds (e.g. a code encoder) starts it; the module keeps its own init.
    init_state = init_state_for(model, Voicebox.from_pretrained(init).state_dict(), str(init)) if init else None

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        if valid_set is None:
            return {}
        return {"valid_flow": validation_loss(m, valid_set, run.training.max_units)}  # type: ignore[arg-type]

    trainer = Trainer(model, train_set, collate_nar, train_set.lengths, run.training, out_dir or run.resolve(run.out_dir),
                      evaluate=evaluate)
    result = trainer.fit(resume=resume, progress=progress, init_state=init_state)
    return result, result.metrics
