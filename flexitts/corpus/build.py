"""`synthesize_corpus`: plan, speak and write the offline training corpus.

Output layout under the corpus folder:

    wavs/<speaker>/<split>-<index>.wav   16 kHz mono PCM16, silence trimmed to ~0.1 s
    manifest.jsonl                       every utterance: audio, text, speaker, duration, split, id
    train.jsonl valid.jsonl test.jsonl   the same rows by split
    corpus.json                          settings, speakers, counts and hours per split

The run is deterministic for a seed (same plan, same bytes) and resumable: corpus.json is written first, every
wav is written atomically, and a re-run with the same settings reuses the wavs already there.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from flexitts.corpus.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    PlannedUtterance,
    UtteranceStream,
    interleave_by_source,
    partition_sentences,
)
from flexitts.corpus.voices import Speaker, check_dependencies, resolve_voices, select_heldout, speakers_for
from flexitts.errors import DataError, DependencyError, FlexiTTSError

CORPUS_FORMAT = "flexitts-corpus"
# Bump when the plan or the audio processing changes: a folder made by another version is not resumed.
CORPUS_VERSION = 2  # 2: slower speaking rates, sentences interleaved by source
MAX_TOPUP_PASSES = 30


@dataclass
class SplitSummary:
    """Size of one split."""

    utterances: int
    seconds: float
    speakers: list[str]

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


@dataclass
class CorpusSummary:
    """What `synthesize_corpus` made."""

    out_dir: Path
    manifest: Path
    splits: dict[str, SplitSummary]
    speakers: list[str]
    heldout_speakers: list[str]
    sentences: int
    written: int = 0
    reused: int = 0
    skipped: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def hours(self) -> float:
        return sum(split.seconds for split in self.splits.values()) / 3600.0

    @property
    def utterances(self) -> int:
        return sum(split.utterances for split in self.splits.values())


def _espeak_version(espeak: str) -> str:
    try:
        out = subprocess.run([espeak, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DependencyError(f"espeak-ng does not run ({error}): run `make setup`") from None
    match = re.search(r"\d+(\.\d+)+", out)
    return match.group(0) if match else out.strip()


def _check_out_dir(out: Path, settings: dict[str, Any] | None) -> None:
    """Allow a new or empty folder, or one holding a corpus made with the same settings; else `DataError`.

    `settings=None` only checks that a non-empty folder holds a readable corpus.json."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out '{out}' is a file: give a folder for the corpus")
    if not out.is_dir() or not any(out.iterdir()):
        return
    meta_path = out / "corpus.json"
    if not meta_path.is_file():
        raise DataError(
            f"'{out}' is not empty and holds no FlexiTTS corpus (no corpus.json): choose a new or empty --out folder"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"'{meta_path}' is unreadable ({error}): remove the folder or choose another --out") from None
    old = meta.get("settings") if isinstance(meta, dict) else None
    if settings is None:
        if not isinstance(old, dict) or meta.get("format") != CORPUS_FORMAT:
            raise DataError(f"'{meta_path}' is not a FlexiTTS corpus description: choose a new or empty --out folder")
        return
    if old != settings:
        old = old if isinstance(old, dict) else {}
        key = next((k for k in settings if old.get(k) != settings[k]), "format")
        raise DataError(
            f"'{out}' holds a corpus made with other settings ({key}: {old.get(key)!r} there, {settings[key]!r} now): "
            "re-run with the same settings to resume or extend it, or choose another --out folder"
        )


def _metadata(
    settings: dict[str, Any],
    hours: float,
    speakers: Sequence[Speaker],
    heldout: Sequence[str],
    partition: dict[str, list[str]],
    calibration: dict[str, float],
    summary: CorpusSummary | None,
) -> dict[str, Any]:
    """corpus.json: settings first (what a resume must match), then what was made."""
    meta: dict[str, Any] = {
        "format": CORPUS_FORMAT,
        "status": "complete" if summary is not None else "incomplete",
        "settings": settings,
        "hours_requested": hours,
        "sample_rate": 16000,
        "sentences": {"total": sum(map(len, partition.values())), **{k: len(v) for k, v in partition.items()}},
        "speakers": [speaker.to_json(speaker.id in heldout) for speaker in speakers],
        "calibration_seconds_per_char": {k: round(v, 6) for k, v in calibration.items()},
        "files": {"manifest": "manifest.jsonl", **{name: f"{name}.jsonl" for name in SPLITS}},
    }
    if summary is not None:
        meta["splits"] = {
            name: {
                "utterances": split.utterances,
                "hours": round(split.hours, 5),
                "seconds": round(split.seconds, 3),
                "speakers": split.speakers,
            }
            for name, split in summary.splits.items()
        }
        meta["total"] = {"utterances": summary.utterances, "hours": round(summary.hours, 5)}
        meta["skipped"] = summary.skipped
    return meta


class _Synthesizer:
    """Runs planned utterances on a thread pool, reusing wavs already on disk, with one tqdm bar."""

    def __init__(self, out: Path, espeak: str, executor: ThreadPoolExecutor, progress: bool):
        from tqdm import tqdm

        self.out = out
        self.espeak = espeak
        self.executor = executor
        self.durations: dict[str, float | None] = {}
        self.written = 0
        self.reused = 0
        self.seconds = 0.0
        self.bar = tqdm(total=0, unit="utt", desc="corpus synth", disable=not progress, dynamic_ncols=True)

    def _existing(self, path: Path) -> float | None:
        from flexitts.audio import audio_duration
        from flexitts.errors import AudioError

        if not path.is_file():
            return None
        try:
            return audio_duration(path)
        except AudioError:  # not one of ours (writes are atomic): make it again
            return None

    def _make(self, item: PlannedUtterance) -> float:
        from flexitts.audio import audio_duration
        from flexitts.corpus.synth import synthesize_to_file

        path = synthesize_to_file(item.speaker, item.text, self.out / item.audio, self.espeak)
        return audio_duration(path)  # measured from the written file, as the manifest promises

    def _done(self, item: PlannedUtterance, duration: float | None) -> None:
        self.durations[item.id] = duration
        self.seconds += duration or 0.0
        self.bar.set_postfix_str(f"{self.seconds / 3600:.3f} h", refresh=False)
        self.bar.update(1)

    def run(self, items: Sequence[PlannedUtterance]) -> None:
        """Make (or reuse) every item; failures are recorded as None."""
        from flexitts.corpus.synth import SynthesisError

        self.bar.total += len(items)
        self.bar.refresh()
        futures: dict[Future, PlannedUtterance] = {}
        for item in items:
            existing = self._existing(self.out / item.audio)
            if existing is not None:
                self.reused += 1
                self._done(item, existing)
            else:
                futures[self.executor.submit(self._make, item)] = item
        for future in as_completed(futures):
            item = futures[future]
            try:
                duration: float | None = future.result()
                self.written += 1
            except SynthesisError:
                duration = None  # espeak-ng failed on this sentence: skip it, top-up makes up the time
            self._done(item, duration)

    def close(self) -> None:
        self.bar.close()


def synthesize_corpus(
    out_dir: str | os.PathLike,
    hours: float,
    voices: Sequence[str] | None = None,
    seed: int = 0,
    jobs: int | None = None,
    heldout_speakers: Sequence[str] | None = None,
    progress: bool = True,
    sentences: Sequence[str] | None = None,
) -> CorpusSummary:
    """Make (or resume, or extend) a synthetic corpus of at least `hours` hours in `out_dir`.

    `voices`: espeak-ng/mbrola voice names (default `DEFAULT_VOICES`), each giving three speakers.
    `heldout_speakers`: speaker-id patterns kept out of train/valid (default `DEFAULT_HELDOUT`).
    `jobs`: concurrent espeak-ng processes (default: the CPU count). `sentences`: text to speak instead of
    `load_sentences()`. Every utterance is one sentence by one speaker; see `flexitts.corpus.splits`.
    """
    started = time.monotonic()
    if not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours <= 0:
        raise FlexiTTSError(f"--hours must be a positive number of hours, got {hours!r}")
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise FlexiTTSError(f"--jobs must be at least 1, got {jobs}")
    resolved = resolve_voices(voices)
    speakers = speakers_for(resolved)
    heldout = select_heldout(speakers, heldout_speakers)
    train_speakers = [s for s in speakers if s.id not in heldout]
    espeak = check_dependencies(resolved)
    out = Path(out_dir)
    _check_out_dir(out, None)  # fail fast on a foreign folder; settings are compared once they are known

    from flexitts.corpus.synth import UTTERANCE_OVERHEAD_S, SynthesisError, calibrate

    executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="espeak")
    try:
        # Calibration runs in espeak-ng processes while this thread parses the sentence sources.
        calibrations = {s.id: executor.submit(calibrate, s, espeak) for s in speakers}
        from flexitts.corpus.sentences import load_sentence_sources, load_sentences, unique_sentences

        # Given text is de-duplicated too: two spellings of one sentence must not land in two splits.
        own_text = sentences is None
        if own_text:
            sentences = load_sentences()
        else:
            sentences = unique_sentences(" ".join(str(text).split()) or None for text in sentences)
        if not sentences:
            raise DependencyError(
                "no sentences to speak: the wordnet-base and fortunes packages are missing, run `make setup`"
            )
        partition = partition_sentences(sentences, seed, DEFAULT_FRACTIONS)
        if own_text:
            partition = {name: interleave_by_source(items, load_sentence_sources()) for name, items in partition.items()}
        empty = [name for name, items in partition.items() if not items]
        if empty:
            raise FlexiTTSError(f"too few sentences ({len(sentences)}): the {empty[0]} split got none, give more text")
        settings = {
            "version": CORPUS_VERSION,
            "seed": seed,
            "voices": [v.name for v in resolved],
            "heldout_speakers": heldout,
            "split_fractions": DEFAULT_FRACTIONS,
            "sentences": {
                "count": len(sentences),
                "sha1": hashlib.sha1("\n".join(sentences).encode("utf-8")).hexdigest(),
            },
            "espeak_ng": _espeak_version(espeak),
        }
        _check_out_dir(out, settings)

        calibration: dict[str, float] = {}
        for speaker_id, future in calibrations.items():
            try:
                calibration[speaker_id] = future.result()
            except SynthesisError as error:
                raise DependencyError(
                    f"espeak-ng cannot speak as {speaker_id}: {error}; run `make setup` or leave that voice out"
                ) from None
        out.mkdir(parents=True, exist_ok=True)
        from flexitts.fileio import write_json_atomic

        if not (out / "corpus.json").is_file():  # a resumed corpus keeps its own (matching) corpus.json
            meta = _metadata(settings, hours, speakers, heldout, partition, calibration, None)
            write_json_atomic(out / "corpus.json", meta)

        streams = {
            name: UtteranceStream(
                name,
                partition[name],
                train_speakers if name != "test" else speakers,
                seed,
                calibration,
                UTTERANCE_OVERHEAD_S,
            )
            for name in SPLITS
        }
        plan = _Plan(streams, hours * 3600.0, len(train_speakers), len(speakers))
        synth = _Synthesizer(out, espeak, executor, progress)
        try:
            synth.run(plan.initial())
            for _ in range(MAX_TOPUP_PASSES):
                more = plan.top_up(synth.durations)
                if not more:
                    break
                synth.run(more)
        finally:
            synth.close()
    finally:
        # On an error or Ctrl-C, drop the queued utterances instead of speaking them all before exiting.
        executor.shutdown(wait=True, cancel_futures=True)

    return _finish(out, settings, hours, speakers, heldout, partition, calibration, plan, synth, started)


class _Plan:
    """How many items of each split's stream the corpus uses, grown until the audio reaches the target."""

    def __init__(self, streams: dict[str, UtteranceStream], target_s: float, n_train: int, n_all: int):
        self.streams = streams
        self.target_s = target_s
        self.split_targets = {name: DEFAULT_FRACTIONS[name] * target_s for name in ("valid", "test")}
        # Every speaker of a split is heard at least once in it, however small the corpus.
        self.min_counts = {"train": n_train, "valid": n_train, "test": n_all}
        self.counts = {name: 0 for name in SPLITS}
        self._stalled = 0

    def items(self, name: str) -> list[PlannedUtterance]:
        stream = self.streams[name]
        return [stream[i] for i in range(self.counts[name])]

    def _extend(self, name: str, seconds: float, ratio: float = 1.0) -> list[PlannedUtterance]:
        """Append items to a split until their (corrected) estimates cover `seconds` and its minimum count."""
        stream, added, covered = self.streams[name], [], 0.0
        while not added or covered < seconds or self.counts[name] < self.min_counts[name]:
            item = stream[self.counts[name]]
            self.counts[name] += 1
            added.append(item)
            covered += item.estimate * ratio
        return added

    def initial(self) -> list[PlannedUtterance]:
        valid = self._extend("valid", self.split_targets["valid"])
        test = self._extend("test", self.split_targets["test"])
        planned = sum(item.estimate for item in valid + test)
        train = self._extend("train", self.target_s - planned)
        return train + valid + test

    def top_up(self, durations: dict[str, float | None]) -> list[PlannedUtterance]:
        """Items that make up the shortfall measured so far (empty when the target is met)."""
        actual, ratio = {}, {}
        for name in SPLITS:
            items = self.items(name)
            actual[name] = sum(durations.get(item.id) or 0.0 for item in items)
            estimated = sum(item.estimate for item in items)
            # Correct later estimates by how far off this split's were (failed items count as zero).
            ratio[name] = min(max(actual[name] / estimated, 0.25), 4.0) if estimated > 0 and actual[name] > 0 else 1.0
        deficits = {name: self.split_targets[name] - actual[name] for name in ("valid", "test")}
        deficits["train"] = self.target_s - sum(actual.values()) - sum(max(0.0, d) for d in deficits.values())
        if all(d <= 0 for d in deficits.values()):
            return []
        if not any(actual.values()):
            self._stalled += 1
            if self._stalled >= 3:  # nothing at all can be spoken: stop instead of looping
                return []
        more: list[PlannedUtterance] = []
        for name in SPLITS:
            if deficits[name] > 0:
                more += self._extend(name, deficits[name], ratio[name])
        return more


def _finish(
    out: Path,
    settings: dict[str, Any],
    hours: float,
    speakers: Sequence[Speaker],
    heldout: Sequence[str],
    partition: dict[str, list[str]],
    calibration: dict[str, float],
    plan: _Plan,
    synth: _Synthesizer,
    started: float,
) -> CorpusSummary:
    """Write the manifests and the final corpus.json; return the summary."""
    from flexitts.data.manifest import Utterance
    from flexitts.fileio import write_json_atomic

    by_split: dict[str, list[Utterance]] = {}
    skipped: list[str] = []
    splits: dict[str, SplitSummary] = {}
    for name in SPLITS:
        rows: list[Utterance] = []
        for item in plan.items(name):
            duration = synth.durations.get(item.id)
            if duration is None:
                skipped.append(item.id)
                continue
            rows.append(
                Utterance(
                    audio=item.audio,
                    text=item.text,
                    speaker=item.speaker.id,
                    duration=round(duration, 4),
                    extra={"split": name, "id": item.id, "language": item.speaker.voice.language},
                )
            )
        by_split[name] = rows
        used = {row.speaker for row in rows}
        splits[name] = SplitSummary(
            utterances=len(rows),
            seconds=sum(row.duration or 0.0 for row in rows),
            speakers=[s.id for s in speakers if s.id in used],
        )
    if not any(by_split.values()):
        raise FlexiTTSError("espeak-ng could not speak a single sentence: check `espeak-ng -v mb-us1 hello`")
    manifest = out / "manifest.jsonl"
    _write_manifest_if_changed(manifest, [row for name in SPLITS for row in by_split[name]])
    for name in SPLITS:
        _write_manifest_if_changed(out / f"{name}.jsonl", by_split[name])
    summary = CorpusSummary(
        out_dir=out,
        manifest=manifest,
        splits=splits,
        speakers=[s.id for s in speakers],
        heldout_speakers=list(heldout),
        sentences=sum(map(len, partition.values())),
        written=synth.written,
        reused=synth.reused,
        skipped=skipped,
        elapsed=time.monotonic() - started,
    )
    meta = _metadata(settings, hours, speakers, heldout, partition, calibration, summary)
    meta_path = out / "corpus.json"
    try:
        unchanged = json.loads(meta_path.read_text(encoding="utf-8")) == meta
    except (OSError, json.JSONDecodeError):
        unchanged = False
    if not unchanged:
        write_json_atomic(meta_path, meta)
    return summary


def _write_manifest_if_changed(path: Path, rows: Sequence[Any]) -> None:
    """`write_manifest`, skipped when the file already holds exactly these rows (a resumed run touches nothing)."""
    from flexitts.data.manifest import write_manifest

    expected = "".join(json.dumps(row.to_row(), ensure_ascii=False) + "\n" for row in rows)
    try:
        if path.read_text(encoding="utf-8") == expected:
            return
    except OSError:
        pass
    write_manifest(path, rows)
