"""The offline corpus generator: sentence cleaning, voices, splits, and a tiny real corpus (espeak-ng + mbrola)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flexitts.corpus import sentences as S
from flexitts.corpus.splits import SPLITS, partition_sentences, sentence_split
from flexitts.corpus.voices import (
    DEFAULT_VOICES,
    resolve_voice,
    resolve_voices,
    select_heldout,
    speakers_for,
)
from flexitts.errors import DataError, DependencyError, FlexiTTSError

HAVE_ESPEAK = shutil.which("espeak-ng") is not None and shutil.which("mbrola") is not None
HAVE_SOURCES = (S.WORDNET_DIR / "data.noun").is_file() and S.FORTUNES_DIR.is_dir()
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng and mbrola are not installed (make setup)")

TINY_HOURS = 0.01
TINY_VOICES = ["mb-us1", "mb-us3", "en-us"]
TINY_SEED = 1


# ---------------------------------------------------------------- sentence cleaning


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  the   team is\ta unit of six ", "The team is a unit of six."),
        ("Is it true that they left?", "Is it true that they left?"),
        ("(astronomy) a star that suddenly explodes and shines", "A star that suddenly explodes and shines."),
        ("\u201cDon\u2019t panic now,\u201d he said softly", '"Don\'t panic now," he said softly.'),
        ("He was born in 1990 in a small town", "He was born in 1990 in a small town."),
        ("_\x08b_\x08o_\x08l_\x08d words are here to stay", "Bold words are here to stay."),
        ("a caf\u00e9 with tables outside the door;", "A cafe with tables outside the door."),
        ("Far too short here", None),
        ("Visit http://example.com for more information", None),
        ("Set x = foo(bar) + 1 in the loop", None),
        ("Call 555 1234 or 555 9876 now", None),
        ("Version 2.0b3 of the tool is out", None),
        ("ALL CAPS SHOUTING IS NOT WELCOME HERE", None),
        ("...was wont to complain that this is a cold world", None),
        ("Say [[h@'loU]] to the phoneme parser", None),  # espeak would read [[...]] as phonemes
    ],
)
def test_clean_sentence(raw, expected):
    assert S.clean_sentence(raw) == expected


def test_clean_sentence_word_limits():
    words = [f"word{chr(97 + i % 26)}" for i in range(40)]
    assert S.clean_sentence(" ".join(words[: S.MAX_WORDS])) == " ".join(words[: S.MAX_WORDS]).capitalize() + "."
    assert S.clean_sentence(" ".join(words[: S.MAX_WORDS + 1])) is None
    assert S.clean_sentence("one two three four five six") == "One two three four five six."
    assert S.clean_sentence("one two three four five") is None
    assert S.clean_sentence("one two") is None


def test_clean_fortune_strips_attributions_and_rejects_verse():
    assert (
        S.clean_fortune("Never trust a computer you can't throw out a window.\n\t\t-- Steve Wozniak\n")
        == "Never trust a computer you can't throw out a window."
    )
    assert S.clean_fortune("Never trust a computer you cannot lift. -- Some Person") == "Never trust a computer you cannot lift."
    # An inner dash is prose, not an attribution.
    assert (
        S.clean_fortune("Accept people for what they are -- completely unacceptable.")
        == "Accept people for what they are -- completely unacceptable."
    )
    assert S.clean_fortune("Real programmers are toilet-\ntrained and neat.") == (
        "Real programmers are toilet-trained and neat."
    )
    assert S.clean_fortune("A bit of talcum\nIs always walcum\n\t\t-- Ogden Nash") is None
    assert S.clean_fortune("Q: Why did it fail?\nA: Nobody tested it at all.") is None
    assert S.clean_fortune("Hodie natus est radici frater et soror.\n\n[ Unto the root is born a brother ]") == (
        "Hodie natus est radici frater et soror."
    )


def test_unique_sentences_is_case_and_punctuation_insensitive():
    got = S.unique_sentences(
        ["Hello there, world.", None, "hello there world!", "HELLO -- there world", "Another one here."]
    )
    assert got == ["Hello there, world.", "Another one here."]
    assert S.dedup_key("It's  a DOG!") == "it s a dog"


@pytest.mark.skipif(not HAVE_SOURCES, reason="wordnet-base and fortunes are not installed (make setup)")
def test_load_sentences_real_sources():
    first = S.load_sentences()
    S._load.cache_clear()
    again = S.load_sentences()  # now from the on-disk cache
    assert again == first
    assert len(first) > 100_000
    assert len({S.dedup_key(s) for s in first}) == len(first)
    for sentence in first:
        assert S.MIN_WORDS <= len(sentence.split()) <= S.MAX_WORDS
        assert sentence.isascii() and sentence.rstrip("\"')")[-1] in ".!?"
    # Both sources contribute: a WordNet example and a fortune.
    assert "It was full of rackets, balls and other objects." in first
    assert "A vivid and creative mind characterizes you." in first
    assert not any("ascii" in p.name for p in S.fortune_files())


# ---------------------------------------------------------------- voices and splits


def test_voices_and_speakers():
    voice = resolve_voice("en-us+f3")
    assert (voice.name, voice.id, voice.gender, voice.engine) == ("en-us+f3", "en-us-f3", "female", "espeak")
    assert resolve_voice("en-us-f3") == voice
    assert resolve_voice("mb-us1").gender == "female" and resolve_voice("mb-en1").gender == "male"
    speakers = speakers_for(resolve_voices(None))
    assert len(speakers) == 3 * len(DEFAULT_VOICES)
    assert [s.id for s in speakers[:3]] == ["mb-us1", "mb-us1-p70s140", "mb-us1-p35s170"]
    assert speakers[1].espeak_args()[:6] == ["-v", "mb-us1", "-p", "70", "-s", "140"]
    accented = resolve_voice("mb-de1-en")  # English through a German speaker's diphones
    assert (accented.engine, accented.gender, accented.database, accented.language) == ("mbrola", "female", "de1", "en-gb")
    assert (resolve_voice("mb-us3").database, resolve_voice("mb-us3").language) == ("us3", "en-us")
    assert resolve_voices(["mb-us1,en-gb", "mb-us1"]) == [resolve_voice("mb-us1"), resolve_voice("en-gb")]


def test_unknown_voice_lists_the_available_ones():
    with pytest.raises(FlexiTTSError, match="unknown voice 'mb-xx9'.*mb-us1.*en-us"):
        resolve_voices(["mb-us1", "mb-xx9"])
    with pytest.raises(FlexiTTSError, match="unknown voice"):
        resolve_voice("en-us+zz")


def test_heldout_selection():
    speakers = speakers_for(resolve_voices(None))
    assert select_heldout(speakers, None) == [
        "mb-us3", "mb-us3-p70s140", "mb-us3-p35s170", "en-gb-m3", "en-gb-m3-p70s140", "en-gb-m3-p35s170"
    ]
    assert select_heldout(speakers, ["en-us-p70s140"]) == ["en-us-p70s140"]
    assert select_heldout(speakers, []) == []
    # Without mb-us3 or en-gb+m3, the last voice is held out.
    two = speakers_for(resolve_voices(["mb-us1", "en-gb"]))
    assert select_heldout(two, None) == ["en-gb", "en-gb-p70s140", "en-gb-p35s170"]
    with pytest.raises(FlexiTTSError, match="matches none"):
        select_heldout(two, ["zz*"])
    with pytest.raises(FlexiTTSError, match="none is left to train on"):
        select_heldout(two, ["*"])


def test_partition_is_seeded_disjoint_and_complete():
    sentences = [f"Sentence number {i} is here." for i in range(3000)]
    parts = partition_sentences(sentences, seed=0)
    assert sorted(s for part in parts.values() for s in part) == sorted(sentences)
    assert 0.85 < len(parts["train"]) / 3000 < 0.95 and len(parts["valid"]) > 50 and len(parts["test"]) > 50
    assert partition_sentences(sentences, seed=0) == parts
    assert partition_sentences(sentences, seed=1) != parts
    assert all(sentence_split(s, 0) == name for name in SPLITS for s in parts[name])


def test_trim_silence_keeps_a_tenth_of_a_second():
    from flexitts.corpus.synth import SAMPLE_RATE, trim_silence

    tone = 0.5 * np.sin(np.arange(SAMPLE_RATE // 2) * 2 * np.pi * 200 / SAMPLE_RATE).astype(np.float32)
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    trimmed = trim_silence(np.concatenate([silence, tone, silence]))
    assert abs(trimmed.size / SAMPLE_RATE - 0.7) < 0.02
    assert trim_silence(np.zeros(100, dtype=np.float32)).size == 100


# ---------------------------------------------------------------- a tiny real corpus


def _make(out: Path, **kwargs):
    from flexitts.corpus import synthesize_corpus

    options = dict(voices=TINY_VOICES, seed=TINY_SEED, progress=False)
    options.update(kwargs)
    return synthesize_corpus(out, TINY_HOURS, **options)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng and mbrola are not installed (make setup)")
    out = tmp_path_factory.mktemp("corpus") / "c"
    return out, _make(out)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tiny_corpus_files_and_durations(tiny):
    out, summary = tiny
    rows = _rows(out / "manifest.jsonl")
    assert len(rows) == summary.utterances > 0
    assert sum(r["duration"] for r in rows) >= TINY_HOURS * 3600
    assert abs(summary.hours - sum(r["duration"] for r in rows) / 3600) < 1e-6
    for row in rows:
        assert set(row) >= {"audio", "text", "speaker", "duration", "split"}
        assert row["audio"] == f"wavs/{row['speaker']}/{row['id']}.wav"
        info = sf.info(str(out / row["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames / info.samplerate - row["duration"]) < 0.01
    assert not list(out.rglob(".*.wav"))  # no temporary file left behind


def test_tiny_corpus_splits(tiny):
    out, summary = tiny
    rows = _rows(out / "manifest.jsonl")
    by_split = {name: _rows(out / f"{name}.jsonl") for name in SPLITS}
    assert [r for name in SPLITS for r in by_split[name]] == rows
    assert all(r["split"] == name for name in SPLITS for r in by_split[name])
    heldout = set(summary.heldout_speakers)
    assert heldout == {"mb-us3", "mb-us3-p70s140", "mb-us3-p35s170"}
    train_texts = {r["text"] for r in by_split["train"] + by_split["valid"]}
    assert not train_texts & {r["text"] for r in by_split["test"]}
    assert not {r["text"] for r in by_split["train"]} & {r["text"] for r in by_split["valid"]}
    assert not heldout & {r["speaker"] for r in by_split["train"] + by_split["valid"]}
    # Every speaker is heard in test, the held-out ones included; every training speaker in train.
    assert {r["speaker"] for r in by_split["test"]} == set(summary.speakers)
    assert {r["speaker"] for r in by_split["train"]} == set(summary.speakers) - heldout
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["status"] == "complete" and meta["settings"]["seed"] == TINY_SEED
    assert {s["id"] for s in meta["speakers"] if s["heldout"]} == heldout
    assert {s["id"]: s["gender"] for s in meta["speakers"]}["mb-us1"] == "female"
    for name in SPLITS:
        assert meta["splits"][name]["utterances"] == len(by_split[name])


def test_tiny_corpus_is_deterministic_via_cli(tiny, tmp_path):
    from flexitts.cli.main import main

    out, _ = tiny
    other = tmp_path / "again"
    argv = ["corpus", "synth", "--out", str(other), "--hours", str(TINY_HOURS), "--seed", str(TINY_SEED)]
    assert main([*argv, "--voices", *TINY_VOICES, "--no-progress", "--jobs", "1"]) == 0
    assert (other / "manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()
    for row in _rows(out / "manifest.jsonl"):
        assert (other / row["audio"]).read_bytes() == (out / row["audio"]).read_bytes()


def test_tiny_corpus_resumes_without_rewriting(tiny, tmp_path):
    out, first = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    summary = _make(copy)
    assert summary.written == 0 and summary.reused == first.utterances
    assert {p: p.stat().st_mtime_ns for p in files} == before
    # An interrupted run (missing wavs) is completed with exactly the same audio.
    rows = _rows(copy / "manifest.jsonl")
    lost = [copy / rows[0]["audio"], copy / rows[-1]["audio"]]
    kept = [p.read_bytes() for p in lost]
    for path in lost:
        path.unlink()
    summary = _make(copy)
    assert summary.written == 2 and [p.read_bytes() for p in lost] == kept


def test_out_dir_must_match_settings(tiny, tmp_path):
    out, _ = tiny
    with pytest.raises(DataError, match="other settings \\(seed"):
        _make(out, seed=TINY_SEED + 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        _make(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from flexitts.cli.main import main
    from flexitts.corpus import synthesize_corpus, voices

    out = tmp_path / "c"
    assert main(["corpus", "synth", "--out", str(out), "--hours", "0.01", "--voices", "mb-xx9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown voice 'mb-xx9'" in err and "mb-us1" in err
    with pytest.raises(FlexiTTSError, match="positive"):
        synthesize_corpus(out, 0)
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match="make setup"):
        _make(out)
    assert not out.exists()
    monkeypatch.setattr(voices.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(voices, "find_mbrola_database", lambda voice: None)  # a database not installed
    with pytest.raises(DependencyError, match=r"mbrola-de1\): run `make setup-accented-voices`"):
        voices.check_dependencies([voices.resolve_voice("mb-de1-en")])
    with pytest.raises(DependencyError, match=r"mbrola-us2\): run `make setup`"):
        voices.check_dependencies([voices.resolve_voice("mb-us2")])


@needs_espeak
def test_failed_utterances_are_skipped_and_topped_up(tmp_path, monkeypatch):
    from flexitts.corpus import synth

    real = synth.run_espeak

    def flaky(speaker, text, espeak="espeak-ng", timeout=60.0):
        if "unlucky" in text:
            raise synth.SynthesisError("espeak-ng exited with status 1")
        return real(speaker, text, espeak, timeout)

    monkeypatch.setattr(synth, "run_espeak", flaky)
    texts = [f"This {'unlucky' if i % 3 == 0 else 'plain'} sentence has the number {i} in it." for i in range(400)]
    out = tmp_path / "c"
    from flexitts.corpus import synthesize_corpus

    summary = synthesize_corpus(out, 0.005, voices=["mb-us1"], sentences=texts, progress=False)
    rows = _rows(out / "manifest.jsonl")
    assert summary.skipped and not {r["id"] for r in rows} & set(summary.skipped)
    assert all("unlucky" not in r["text"] for r in rows)
    assert sum(r["duration"] for r in rows) >= 0.005 * 3600
    assert json.loads((out / "corpus.json").read_text())["skipped"] == summary.skipped


def test_interleave_by_source_keeps_proportions_and_order():
    from flexitts.corpus.splits import interleave_by_source

    sources = {f"f{i}": "fortune" for i in range(70)} | {f"e{i}": "wordnet-example" for i in range(50)}
    sources |= {f"g{i}": "wordnet-gloss" for i in range(50)}
    order = interleave_by_source(list(sources), sources)
    assert sorted(order) == sorted(sources)  # a permutation: nothing lost or repeated
    first = order[:100]
    assert sum(s.startswith("f") for s in first) == 70 and sum(s.startswith("e") for s in first) == 20
    assert [s for s in order if s.startswith("e")] == [f"e{i}" for i in range(50)]  # each source keeps its order
    assert interleave_by_source(["x", "y"], {}) == ["x", "y"]  # unknown sources fall back, order kept
