"""The data manifest: JSON Lines, one utterance a line, the same for our corpus and a user's data.

    {"audio": "wavs/0001.wav", "text": "Hello there.", "speaker": "spk1", "duration": 1.93}

`audio` is relative to the manifest's folder (absolute paths are accepted too). Extra keys are kept.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from flexitts.errors import DataError
from flexitts.fileio import write_jsonl_atomic

REQUIRED_KEYS = ("audio", "text")


@dataclass
class Utterance:
    """One manifest row. `audio` is stored as written; `resolve(root)` gives the file's path."""

    audio: str
    text: str
    speaker: str = "unknown"
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve(self, root: str | os.PathLike) -> Path:
        """The audio file's path: `audio` joined to `root` unless it is absolute."""
        path = Path(self.audio)
        return path if path.is_absolute() else Path(root) / path

    def to_row(self) -> dict[str, Any]:
        """The JSON object of this utterance (the `extra` keys flattened in)."""
        row = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Utterance":
        known = {"audio", "text", "speaker", "duration"}
        return cls(
            audio=str(row["audio"]),
            text=str(row["text"]),
            speaker=str(row.get("speaker", "unknown")),
            duration=float(row["duration"]) if row.get("duration") is not None else None,
            extra={k: v for k, v in row.items() if k not in known},
        )


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a manifest; raise `DataError` naming the first malformed line."""
    manifest = Path(path)
    if not manifest.is_file():
        raise DataError(f"manifest '{manifest}' does not exist: give a JSON Lines file (see `flexitts data prepare`)")
    rows: list[Utterance] = []
    with manifest.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{manifest}:{number} is not valid JSON ({error.msg}): fix or remove that line") from None
            if not isinstance(row, dict) or any(key not in row for key in REQUIRED_KEYS):
                raise DataError(f"{manifest}:{number} lacks the keys {list(REQUIRED_KEYS)}: every line needs audio and text")
            rows.append(Utterance.from_row(row))
    if not rows:
        raise DataError(f"manifest '{manifest}' has no utterances")
    return rows


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write utterances to `path` atomically; returns the path."""
    write_jsonl_atomic(path, (utt.to_row() for utt in utterances))
    return Path(path)
