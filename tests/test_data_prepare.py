"""`flexitts data prepare`: metadata.csv to manifest, and manifest reading errors."""
from __future__ import annotations

import json

import pytest

from flexitts.cli.main import main
from flexitts.data.manifest import read_manifest
from flexitts.data.prepare import prepare_csv
from flexitts.errors import DataError
from tests.conftest import tone


def _dataset(tmp_path, write_wav):
    (tmp_path / "wavs").mkdir()
    write_wav("wavs/a.wav", tone(1.25, 16000), 16000)
    write_wav("wavs/b.flac", tone(0.5, 22050), 22050)
    csv = tmp_path / "metadata.csv"
    csv.write_text("audio_file|text\nwavs/a.wav|Hello there.\nwavs/b.flac|General Kenobi!\n", encoding="utf-8")
    return csv


def test_prepare_measures_durations(tmp_path, write_wav):
    csv = _dataset(tmp_path, write_wav)
    out = tmp_path / "out" / "manifest.jsonl"
    prepare_csv(csv, out, speaker="me")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {"audio": "../wavs/a.wav", "text": "Hello there.", "speaker": "me", "duration": 1.25},
        {"audio": "../wavs/b.flac", "text": "General Kenobi!", "speaker": "me", "duration": 0.5},
    ]
    utts = read_manifest(out)
    assert utts[0].resolve(out.parent).resolve() == (tmp_path / "wavs" / "a.wav").resolve()


def test_ljspeech_ids(tmp_path, write_wav):
    (tmp_path / "wavs").mkdir()
    write_wav("wavs/LJ001.wav", tone(0.75, 16000), 16000)
    csv = tmp_path / "metadata.csv"
    csv.write_text("LJ001|Dr. Smith|Doctor Smith\n", encoding="utf-8")
    [utt] = prepare_csv(csv, tmp_path / "m.jsonl")
    assert utt.text == "Doctor Smith" and utt.duration == 0.75


def test_missing_and_corrupt_files_listed_in_one_error(tmp_path, write_wav):
    csv = _dataset(tmp_path, write_wav)
    (tmp_path / "wavs" / "bad.wav").write_bytes(b"not audio")
    csv.write_text(csv.read_text() + "wavs/gone.wav|x\nwavs/bad.wav|y\n", encoding="utf-8")
    out = tmp_path / "m.jsonl"
    with pytest.raises(DataError) as info:
        prepare_csv(csv, out)
    message = str(info.value)
    assert "2 audio file(s)" in message and "gone.wav (missing)" in message and "bad.wav (unreadable" in message
    assert "\n" not in message and not out.exists()


def test_cli_prepare_and_errors(tmp_path, write_wav, capsys):
    csv = _dataset(tmp_path, write_wav)
    assert main(["data", "prepare", "--csv", str(csv), "--out", str(tmp_path / "m.jsonl")]) == 0
    assert "2 utterances" in capsys.readouterr().out
    assert main(["data", "prepare", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and not (tmp_path / "x.jsonl").exists()


def test_read_manifest_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "text": "hi"}\n{broken\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2 is not valid JSON"):
        read_manifest(bad)
    bad.write_text('{"audio": "a.wav"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="lacks the keys"):
        read_manifest(bad)
