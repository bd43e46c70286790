"""The token cache: every utterance of a manifest encoded once by the codec, for AR and NAR training.

    DIR/meta.json      format version, codec fingerprint, manifest checksum, the settings
    DIR/items/NNNNNN.npz  one utterance: phonemes [P], frames, and per setting codes [G] + durations [G];
                          after `flexitts data align`, also phone_onsets [Ns] (`flexitts.data.phone_alignment`)
    DIR/index.jsonl    one row per item (id, speaker, audio, text, frames, rates), written last

A setting is one way of running the codec: `t0.48` (threshold 0.48) or `r8.3` (target 8.3 tokens/s).
Items are written atomically one by one, so an interrupted build resumes where it stopped; the index
appears only when every item exists. Training reads only this folder (and the audio, for the NAR's mel).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from flexitts.errors import DataError
from flexitts.fileio import atomic_path, write_json_atomic, write_jsonl_atomic

FORMAT_VERSION = 1
META = "meta.json"
INDEX = "index.jsonl"
ITEMS = "items"


@dataclass
class TokenSetting:
    """How the codec merges frames: a threshold tau, or a target frame rate in Hz."""

    threshold: float | None = None
    frame_rate: float | None = None

    @property
    def name(self) -> str:
        return f"t{self.threshold:g}" if self.threshold is not None else f"r{self.frame_rate:g}"

    @classmethod
    def parse(cls, name: str) -> "TokenSetting":
        """`t0.48` -> threshold 0.48; `r8.3` -> frame rate 8.3."""
        try:
            value = float(name[1:])
        except ValueError:
            value = None
        if value is None or name[:1] not in ("t", "r"):
            raise DataError(f"token setting '{name}' must be t<threshold> or r<frame rate>, e.g. t0.48 or r8.3")
        return cls(threshold=value) if name[0] == "t" else cls(frame_rate=value)


@dataclass
class TokenItem:
    """One cached utterance (arrays are int64)."""

    id: str
    speaker: str
    audio: Path
    text: str
    phonemes: np.ndarray  # [P] phoneme-table ids
    frames: int  # 12.5 Hz base frames of the audio
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # setting -> [G]
    durations: dict[str, np.ndarray] = field(default_factory=dict)  # setting -> [G], 1..8, sum == frames
    # Base-frame onsets of the spoken phones (`spoken_positions(phonemes)`), None until the cache is aligned.
    phone_onsets: np.ndarray | None = None

    @property
    def rates(self) -> dict[str, float]:
        """Tokens per second of this item under each setting."""
        return {name: len(codes) * 12.5 / max(1, self.frames) for name, codes in self.codes.items()}


def _item_file(root: Path, number: int) -> Path:
    return root / ITEMS / f"{number:06d}.npz"


def write_token_cache_item(root: str | os.PathLike, item: TokenItem, number: int) -> Path:
    """Write item `number` of the cache (atomically) and return its file."""
    file = _item_file(Path(root), number)
    file.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"phonemes": np.asarray(item.phonemes, np.int64), "frames": np.asarray(item.frames)}
    for name in item.codes:
        arrays[f"codes/{name}"] = np.asarray(item.codes[name], np.int64)
        arrays[f"durations/{name}"] = np.asarray(item.durations[name], np.int64)
    if item.phone_onsets is not None:
        arrays["phone_onsets"] = np.asarray(item.phone_onsets, np.float32)
    meta = {"id": item.id, "speaker": item.speaker, "audio": str(item.audio), "text": item.text}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_path(file) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return file


def read_token_cache_item(file: Path) -> TokenItem:
    """Load one item file."""
    with np.load(file) as data:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
        codes = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("codes/")}
        durations = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("durations/")}
        onsets = data["phone_onsets"] if "phone_onsets" in data.files else None
        return TokenItem(meta["id"], meta["speaker"], Path(meta["audio"]), meta["text"], data["phonemes"],
                         int(data["frames"]), codes, durations, onsets)


def write_token_cache_index(root: str | os.PathLike, meta: dict[str, Any], count: int) -> None:
    """Write `meta.json` and the index of items 0..count-1 (all must exist)."""
    folder = Path(root)
    rows = []
    for number in range(count):
        item = read_token_cache_item(_item_file(folder, number))
        rows.append({"file": f"{ITEMS}/{number:06d}.npz", "id": item.id, "speaker": item.speaker,
                     "audio": str(item.audio), "text": item.text, "frames": item.frames,
                     "phonemes": int(len(item.phonemes)), "tokens": {k: int(len(v)) for k, v in item.codes.items()}})
    write_json_atomic(folder / META, {"format": FORMAT_VERSION, **meta})
    write_jsonl_atomic(folder / INDEX, rows)


class TokenCache:
    """Read access to a token cache folder; items are loaded into memory on first use (they are small)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not (self.root / INDEX).is_file() or not (self.root / META).is_file():
            raise DataError(f"'{self.root}' is not a complete token cache: run `flexitts data tokens --manifest M --out {self.root}`")
        self.meta = json.loads((self.root / META).read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT_VERSION:
            raise DataError(f"'{self.root}' is a token cache of format {self.meta.get('format')}, expected {FORMAT_VERSION}: rebuild it")
        self.rows = [json.loads(line) for line in (self.root / INDEX).read_text(encoding="utf-8").splitlines() if line]
        self.settings: list[str] = list(self.meta.get("settings", []))
        self._items: dict[int, TokenItem] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def item(self, index: int) -> TokenItem:
        if index not in self._items:
            self._items[index] = read_token_cache_item(self.root / self.rows[index]["file"])
        return self._items[index]

    def speakers(self) -> list[str]:
        return [row["speaker"] for row in self.rows]

    @property
    def aligned(self) -> bool:
        """Whether every item has its phone onsets (`flexitts data align`)."""
        return bool(self.meta.get("phone_onsets"))


def _manifest_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_token_cache(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    codec: Any,
    settings: Sequence[str],
    batch_seconds: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> TokenCache:
    """Encode every utterance of `manifest` under each setting with `codec` (semantic codes only) into `out`.

    Resumes: items already written are skipped, provided the manifest, codec and settings are unchanged.
    """
    import torch

    from flexitts.audio import load_audio
    from flexitts.data.manifest import read_manifest
    from flexitts.text import PhonemeTable
    from flexitts.training.asr_data import phonemize_utterances
    from flexitts.training.sampler import BucketBatchSampler

    manifest_path, root = Path(manifest), Path(out)
    parsed = [TokenSetting.parse(name) for name in settings]
    if not parsed:
        raise DataError("give at least one threshold or frame rate to encode with")
    rows = read_manifest(manifest_path)
    meta = {"codec": codec.config.fingerprint(), "manifest": str(manifest_path.resolve()),
            "manifest_sha256": _manifest_checksum(manifest_path), "settings": [s.name for s in parsed]}
    stamp = root / ".build.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) != meta:
        raise DataError(f"'{root}' holds tokens of another manifest, codec or settings: choose an empty --out folder")
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stamp, meta)

    todo = [i for i in range(len(rows)) if not _item_file(root, i).is_file()]
    phonemes = phonemize_utterances([rows[i] for i in todo]) if todo else []
    table = PhonemeTable.default()
    ids = {i: table.encode(p) for i, p in zip(todo, phonemes)}
    lengths = [int((rows[i].duration or 10.0) * 16000) for i in todo]
    sampler = BucketBatchSampler(lengths, int(batch_seconds * 16000), seed=0) if todo else None
    done = len(rows) - len(todo)
    for batch in (sampler.epoch_batches(0) if sampler is not None else []):
        numbers = [todo[k] for k in batch]
        audio = [load_audio(rows[n].resolve(manifest_path.parent), target_rate=16000)[0] for n in numbers]
        wav_lengths = torch.tensor([len(a) for a in audio])
        wav = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
        per_item: list[TokenItem] = [
            TokenItem(str(rows[n].extra.get("id", Path(rows[n].audio).stem)), rows[n].speaker,
                      rows[n].resolve(manifest_path.parent).resolve(), rows[n].text, np.asarray(ids[n], np.int64),
                      int(-(-int(wav_lengths[j]) // 1280)))
            for j, n in enumerate(numbers)
        ]
        with torch.no_grad():
            encoded = codec.encode_settings(wav, [(s.threshold, s.frame_rate) for s in parsed], 16000, num_quantizers=1,
                                            wav_lengths=wav_lengths)
            for setting, tokens in zip(parsed, encoded):
                for j, item in enumerate(per_item):
                    g = int(tokens.num_tokens[j])
                    item.codes[setting.name] = tokens.semantic_codes[j, :g].cpu().numpy()
                    item.durations[setting.name] = tokens.token_lengths[j, :g].cpu().numpy()
        for n, item in zip(numbers, per_item):
            write_token_cache_item(root, item, n)
        done += len(numbers)
        if progress is not None:
            progress(done, len(rows))
    write_token_cache_index(root, meta, len(rows))
    return TokenCache(root)


def align_token_cache(
    root: str | os.PathLike,
    recognizer: Any,
    batch_seconds: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> TokenCache:
    """Add phone onsets (CTC forced alignment by `recognizer`, a `CTCPhoneRecognizer`) to every item of a complete
    cache. Items are rewritten atomically one by one, so an interrupted run resumes; `meta.json` records the
    alignment when every item has it."""
    import torch

    from flexitts.audio import load_audio
    from flexitts.data.phone_alignment import phone_onsets, spoken_positions
    from flexitts.training.sampler import BucketBatchSampler

    cache = TokenCache(root)
    symbols = list(recognizer.config.symbols)
    todo = [i for i in range(len(cache)) if cache.item(i).phone_onsets is None]
    sampler = BucketBatchSampler([int(cache.rows[i]["frames"]) * 1280 for i in todo], int(batch_seconds * 16000), seed=0) if todo else None
    done = len(cache) - len(todo)
    for batch in (sampler.epoch_batches(0) if sampler is not None else []):
        numbers = [todo[k] for k in batch]
        items = [cache.item(n) for n in numbers]
        audio = [load_audio(item.audio, target_rate=16000)[0] for item in items]
        wav = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
        phones = [item.phonemes[spoken_positions(item.phonemes, symbols)].tolist() for item in items]
        for n, item, onsets in zip(numbers, items, phone_onsets(recognizer, wav, torch.tensor([len(a) for a in audio]), phones)):
            item.phone_onsets = onsets
            write_token_cache_item(cache.root, item, n)
        done += len(numbers)
        if progress is not None:
            progress(done, len(cache))
    meta = {k: v for k, v in cache.meta.items() if k != "format"}
    write_json_atomic(cache.root / META, {"format": FORMAT_VERSION, **meta, "phone_onsets": True})
    return TokenCache(root)
