"""Convert a user's `metadata.csv` (`audio_file|text`, F5-TTS style; LJSpeech's `id|text|normalized`
also works) into a manifest with measured durations."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from flexitts.data.manifest import Utterance, write_manifest
from flexitts.errors import AudioError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
HEADER_NAMES = {"audio_file", "audio", "path", "file", "filename", "id"}
# How many problem files one error message names before summarising the rest.
MAX_LISTED = 5


def _audio_path(cell: str, root: Path) -> Path:
    """The file a CSV cell names: relative to the CSV's folder, or an LJSpeech id under `wavs/`."""
    path = Path(cell)
    if not path.is_absolute():
        path = root / path
    if path.suffix.lower() not in AUDIO_SUFFIXES and not path.exists():
        path = root / "wavs" / f"{cell}.wav"
    return path


def read_metadata_csv(csv_path: str | os.PathLike, delimiter: str = "|") -> list[tuple[str, str]]:
    """Rows `(audio_cell, text)` of a metadata CSV; a header line (audio_file|text) is skipped."""
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"metadata file '{path}' does not exist: give a CSV with lines `audio_file|text`")
    rows: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE), start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() in HEADER_NAMES:
                continue
            if len(row) < 2 or not row[1].strip():
                raise DataError(f"{path}:{number} is not `audio_file{delimiter}text`: fix or remove that line")
            # LJSpeech's third column is the normalised text; prefer it when present.
            text = row[2] if len(row) >= 3 and row[2].strip() else row[1]
            rows.append((row[0].strip(), text.strip()))
    if not rows:
        raise DataError(f"metadata file '{path}' has no rows")
    return rows


def prepare_csv(
    csv_path: str | os.PathLike,
    out_path: str | os.PathLike,
    speaker: str | None = None,
    delimiter: str = "|",
) -> list[Utterance]:
    """Write a manifest at `out_path` for every row of `csv_path`, durations measured from the files.

    Audio paths in the manifest are relative to `out_path`'s folder. Every missing or unreadable file is
    collected and reported in a single `DataError`; nothing is written then.
    """
    import soundfile as sf

    csv_file = Path(csv_path).resolve()
    out = Path(out_path).resolve()
    speaker = speaker or csv_file.parent.name or "speaker"
    utterances: list[Utterance] = []
    problems: list[str] = []
    for cell, text in read_metadata_csv(csv_file, delimiter):
        audio = _audio_path(cell, csv_file.parent)
        try:
            info = sf.info(str(audio))
            if info.frames == 0:
                raise AudioError("empty")
        except (sf.LibsndfileError, RuntimeError, AudioError) as error:
            problems.append(f"{cell} ({'missing' if not audio.exists() else 'unreadable: ' + ' '.join(str(error).split())[:60]})")
            continue
        utterances.append(
            Utterance(
                audio=os.path.relpath(audio, out.parent),
                text=text,
                speaker=speaker,
                duration=round(info.frames / info.samplerate, 3),
            )
        )
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{len(problems)} audio file(s) in '{csv_file}' cannot be used: {listed}{more}; fix or remove those rows")
    write_manifest(out, utterances)
    return utterances
