"""Text frontend: normalisation, phonemisation (espeak-ng), the phoneme table and chunking."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexitts.errors import ConfigError, DependencyError, FlexiTTSError, TextError
from flexitts.text import (
    PAD,
    SPECIAL_TOKENS,
    UNK,
    WORD_BOUNDARY,
    PhonemeTable,
    has_speakable,
    normalize_text,
    phonemize,
    phonemize_batch,
    split_into_chunks,
    tokens_from_espeak,
)

# `flexitts.text.phonemize` the attribute is the function; the module is reached through sys.modules.
import flexitts.text.phonemize  # noqa: E402,F401

phonemize_module = sys.modules["flexitts.text.phonemize"]

# Varied English: numbers, money, abbreviations, names, loanwords, questions, quotes, long and rare words.
SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "She sells seashells by the seashore.",
    "Mr. and Mrs. Smith arrived at 7:30 p.m. on Tuesday.",
    "Dr. Jones paid $5.50 for a sandwich and a 20% tip.",
    "The meeting is scheduled for January 1st, 2025, at St. Paul's Cathedral.",
    "I can't believe it's already half past nine!",
    "Would you rather have tea, coffee, or hot chocolate?",
    "The temperature dropped to −5 degrees overnight.",
    "“Quotation marks” and ‘apostrophes’ should be handled… gracefully.",
    "Supercalifragilisticexpialidocious is quite a long word.",
    "Antidisestablishmentarianism was a nineteenth-century movement.",
    "The pharaoh's tomb contained gold, jewels, and papyrus scrolls.",
    "Rhythm and blues influenced rock and roll in the 1950s.",
    "Please measure the treasure's leisure-time usage.",
    "Thirty-three thousand thieves thought they thrilled the throne.",
    "Yesterday, the choir sang a beautiful hymn in the church.",
    "Genre, rouge, and beige are words borrowed from French.",
    "Naïve café owners in Zürich serve crème brûlée.",
    "Schrödinger's cat is both alive and dead, or so they say.",
    "The 3.14 value of pi is an approximation; 22/7 is another.",
    "NASA launched the rocket at 5:00 a.m. EST.",
    "Our new CEO, Ms. Garcia, starts on Monday — finally!",
    "Why? Because I said so. That's why.",
    "Water boils at 100 °C, or 212 °F, at sea level.",
    "He whispered, \"Don't look behind you.\"",
    "The judge's verdict was just; the jury agreed unanimously.",
    "Oil, soil, and toil: the boy's joy was spoiled.",
    "A hue and cry arose from the huge crowd in the square.",
    "Fire! Fire! Everybody out of the building, now!",
    "Our hour of power is near; fear nothing here.",
    "The tourists were sure the tour was poorly organised.",
    "Cars, bars and stars fill the far-off boulevard.",
    "The bottle of water sat on the little metal table.",
    "Button, mountain, and certain words have a glottal stop in some accents.",
    "Wednesday, February, and colonel are spelled strangely.",
    "Knights in shining armour rode through the misty glen.",
    "Xylophones, zebras, and yaks appear in children's alphabets.",
    "He's the thirty-second person to climb Mt. Everest this year.",
    "Can you believe the price went from $1,000 to $2,500?",
    "The Yangtze, the Nile, and the Amazon are very long rivers.",
    "Vladimir, Siobhan and Nguyen met in Reykjavík.",
    "Is it a bird, a plane, or something else entirely?",
    "Ugh, hmm, and uh-huh are interjections.",
    "The fjord's icy water glistened under the aurora borealis.",
    "Photosynthesis converts light energy into chemical energy.",
    "Their aerial acrobatics were awe-inspiring & unforgettable.",
    "Buy 3 apples, 2 pears, etc. at the market on Baker St.",
    "The end.",
]


@pytest.fixture(scope="module")
def table() -> PhonemeTable:
    return PhonemeTable.default()


@pytest.fixture(scope="module")
def corpus_tokens() -> list[list[str]]:
    return phonemize_batch(SENTENCES)


# ---------------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("“Hi,” she said… ‘ok’", "\"Hi,\" she said... 'ok'"),
        ("Mr. Smith met Dr. Who and Mrs. Hudson.", "Mister Smith met Doctor Who and Missus Hudson."),
        ("Cats vs. dogs, apples etc. Then more.", "Cats versus dogs, apples et cetera. Then more."),
        ("It costs $5.", "It costs 5 dollars."),
        ("It costs $1 or $2.50 today", "It costs 1 dollar or 2 dollars 50 cents today"),
        ("A $5 million deal", "A 5 million dollars deal"),
        ("50% off & free", "50 percent off and free"),
        ("St. Louis is on Baker St.", "Saint Louis is on Baker Street."),
        ("pages 10–20", "pages 10 to 20"),
        ("wait — what -- really", "wait - what - really"),
        ("Hello 😀 world 🎉!", "Hello world!"),
        ("tab\there\nnew\u200bline \x07bell", "tab here newline bell"),
        ("   lots    of\t\tspace  ", "lots of space"),
        ("ﬁne ＦＵＬＬ width ½", "fine FULL width 1 over 2"),
        ("a [note] {here}", "a (note) (here)"),
        ("1️⃣ 👍🏽", "1"),
        ("naïve café", "naïve café"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_is_idempotent_on_corpus() -> None:
    for s in SENTENCES:
        once = normalize_text(s)
        assert normalize_text(once) == once
        assert "  " not in once and once == once.strip()
        assert not re.search(r"[“”‘’…—–]", once)


_TRICKY = st.sampled_from(
    ["Mr.", "St.", "etc.", "$5.50", "50%", "&", "😀", " No. ", "—", "…", "“", "\\", " ", "a"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.lists(_TRICKY, max_size=12).map("".join))
def test_normalize_is_idempotent_property(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert has_speakable(text) == any(ch.isalnum() for ch in once)


@pytest.mark.parametrize("text", ["", "   \n\t", "😀🎉👍🏽", "...!?", "— – -", "\u200b\u200d"])
def test_has_speakable_false(text: str) -> None:
    assert not has_speakable(text)


@pytest.mark.parametrize("text", ["a", "7", "hi!", "😀 ok", "&", "Ж"])
def test_has_speakable_true(text: str) -> None:
    assert has_speakable(text)


# ---------------------------------------------------------------------------------------------- phonemisation


def test_hello_world_tokens() -> None:
    tokens = phonemize("Hello, world!")
    # Expected layout: phones of "hello", ",", boundary, phones of "world", "!"; stress marks are own tokens.
    assert tokens[0] == "h" and tokens[-1] == "!"
    comma = tokens.index(",")
    assert tokens[comma + 1] == WORD_BOUNDARY and tokens[comma + 2] == "w"
    assert tokens.count(WORD_BOUNDARY) == 1
    assert {"h", "l", "oʊ", "w", "ɜː", "d"} <= set(tokens)
    assert "ˈ" in tokens


def test_plain_hello_world_has_one_boundary() -> None:
    tokens = phonemize("hello world")
    assert tokens.count(WORD_BOUNDARY) == 1
    assert tokens[0] != WORD_BOUNDARY and tokens[-1] != WORD_BOUNDARY
    assert tokens[: tokens.index(WORD_BOUNDARY)] == phonemize("hello")


def test_affricates_diphthongs_and_length_marks() -> None:
    tokens = phonemize("church judge boy day go father")
    assert "tʃ" in tokens and "dʒ" in tokens
    assert "ɔɪ" in tokens and "eɪ" in tokens and "oʊ" in tokens
    assert "ɑː" in tokens  # the length mark stays on its vowel
    for tok in tokens:
        assert not tok.startswith("ː")
        # stress marks are always tokens of their own
        assert tok in ("ˈ", "ˌ") or ("ˈ" not in tok and "ˌ" not in tok)
    # a stress mark is always followed by a phone
    for i, tok in enumerate(tokens):
        if tok in ("ˈ", "ˌ"):
            assert tokens[i + 1] not in ("ˈ", "ˌ", WORD_BOUNDARY)


def test_phonemize_is_deterministic(table: PhonemeTable) -> None:
    first = [table.encode(phonemize(s)) for s in SENTENCES[:10]]
    second = [table.encode(phonemize(s)) for s in SENTENCES[:10]]
    assert first == second


def test_batch_equals_single(corpus_tokens: list[list[str]]) -> None:
    assert len(corpus_tokens) == len(SENTENCES)
    for sentence, batched in zip(SENTENCES, corpus_tokens):
        assert phonemize(sentence) == batched


def test_batch_alignment_with_decimals_and_periods() -> None:
    # phonemizer 3.4's own punctuation handling split these into two lines each and misaligned the batch.
    texts = ["NT 5.0 for Intel.with a big event", "stardate 4770.3.", "hello"]
    out = phonemize_batch(texts)
    assert len(out) == 3
    assert out[2] == phonemize("hello")
    assert out[1][-1] == "."
    for tokens in out[:2]:
        assert "ɔɪ" in tokens  # "point": the decimal separator reached espeak inside its number
    assert phonemize_batch([]) == []


def test_punctuation_and_dash_tokens() -> None:
    tokens = phonemize('He said: "Go away" (now) - ok?')
    for mark in (":", '"', "(", ")", "—", "?"):
        assert mark in tokens
    assert tokens[-1] == "?"


def test_language_selection() -> None:
    us, gb = phonemize("go home", "en-us"), phonemize("go home", "en-gb")
    assert "oʊ" in us and "əʊ" in gb and us != gb
    with pytest.raises(ConfigError):
        phonemize("hello", language="xx-nonexistent")


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "😀🎉", "👍🏽👍🏽", "...", "?!", "— —", "()"])
def test_unspeakable_text_raises(text: str) -> None:
    with pytest.raises(TextError) as err:
        phonemize(text)
    assert "\n" not in str(err.value) and "speakable" in str(err.value)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_phonemize_any_text_gives_tokens_or_text_error(text: str) -> None:
    try:
        tokens = phonemize(text)
    except TextError as err:
        # Either nothing speakable, or only characters espeak-ng prints nothing for (e.g. "ꣲ").
        assert not has_speakable(text) or "pronounce" in str(err)
        return
    assert tokens and all(isinstance(t, str) and t for t in tokens)
    assert tokens[0] != WORD_BOUNDARY and tokens[-1] != WORD_BOUNDARY
    assert all(not (a == b == WORD_BOUNDARY) for a, b in zip(tokens, tokens[1:]))


def test_foreign_scripts_cannot_corrupt_espeak() -> None:
    # espeak-ng 1.51 left in another voice by these garbled all later English ("hello" -> "hˈʌlʌ").
    before = phonemize("Hello, world!")
    poisons = ["ꥠ", "ퟁ", ",끌.b햬傴컙璤엌튓췺剌醡뱼游謽a誼c𦠨", "Ꭰ Ꭱ Ꭲ", "こんにちは 世界"]
    for text in poisons:
        try:
            phonemize(text)
        except TextError as err:
            assert "pronounce" in str(err)
    assert phonemize("Hello, world!") == before
    # Letters of another script are dropped, not spelled out as "Chinese letter".
    assert phonemize("Hello 世界 world") == phonemize("Hello world")
    # ...but a language's own script is kept.
    russian = phonemize("Привет, мир", "ru")
    assert "," in russian and WORD_BOUNDARY in russian


def test_batch_names_the_bad_text() -> None:
    with pytest.raises(TextError, match="#1"):
        phonemize_batch(["fine", "😀", "also fine"])
    with pytest.raises(TypeError):
        phonemize_batch("not a list")  # type: ignore[arg-type]


def test_missing_espeak_raises_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from phonemizer.backend import EspeakBackend

    monkeypatch.setattr(phonemize_module, "_backends", {})
    monkeypatch.setattr(EspeakBackend, "is_available", classmethod(lambda cls: False))
    with pytest.raises(DependencyError) as err:
        phonemize("hello")
    message = str(err.value)
    assert "espeak-ng" in message and "apt-get install espeak-ng" in message and "make setup" in message
    assert isinstance(err.value, FlexiTTSError)


def test_backend_created_once_per_language() -> None:
    phonemize("one")
    backend = phonemize_module._backends["en-us"]
    phonemize("two")
    assert phonemize_module._backends["en-us"] is backend


def test_tokens_from_espeak_is_deterministic_parsing() -> None:
    assert tokens_from_espeak("h|ə|l|ˈoʊ, w|ˈɜː|l|d!") == [
        "h", "ə", "l", "ˈ", "oʊ", ",", " ", "w", "ˈ", "ɜː", "l", "d", "!",
    ]
    assert tokens_from_espeak("a|ː b") == ["aː", " ", "b"]  # a detached length mark rejoins its vowel
    assert tokens_from_espeak("  ") == []


# ---------------------------------------------------------------------------------------------- symbol table


def test_special_tokens_come_first(table: PhonemeTable) -> None:
    assert table.symbols[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert table.pad_id == 0 and table.encode([PAD]) == [0]
    assert table.unk_id == 1
    assert len({table.pad_id, table.unk_id, table.sos_id, table.eos_id, table.task_id, table.sep_id}) == 6
    assert WORD_BOUNDARY in table and "ˈ" in table and "ˌ" in table and "," in table


def test_default_table_is_pinned(table: PhonemeTable) -> None:
    # Changing the built-in inventory changes every checkpoint's input ids: append only, then update these.
    assert len(table) == 191
    assert table.fingerprint() == "dda3c62e669b64be"
    assert PhonemeTable.default() is table
    assert PhonemeTable(list(table.symbols)).fingerprint() == table.fingerprint()


@pytest.mark.parametrize("language", ["en-us", "en-gb"])
def test_inventory_covers_varied_english(table: PhonemeTable, language: str) -> None:
    tokens = phonemize_batch(SENTENCES, language)
    unknown = table.unknown(t for sent in tokens for t in sent)
    assert unknown == [], f"symbols missing from the built-in table for {language}: {unknown}"


def test_inventory_covers_fortunes(table: PhonemeTable) -> None:
    path = Path("/usr/share/games/fortunes/fortunes")
    if not path.exists():
        pytest.skip("fortune files are not installed")
    blocks = path.read_text(encoding="utf-8", errors="ignore").split("\n%\n")
    texts = [" ".join(b.split()) for b in blocks if has_speakable(b)][:300]
    tokens = phonemize_batch(texts)
    assert table.unknown(t for sent in tokens for t in sent) == []


def test_round_trip_symbols_ids(table: PhonemeTable, corpus_tokens: list[list[str]]) -> None:
    for tokens in corpus_tokens:
        ids = table.encode(tokens)
        assert table.unk_id not in ids
        assert all(0 < i < len(table) for i in ids)
        assert table.decode(ids) == tokens


def test_unknown_symbols_map_to_unk(table: PhonemeTable) -> None:
    ids = table.encode(["h", "ʘ", "not-a-phone", "", "ə"])
    assert ids[1:4] == [table.unk_id] * 3
    assert ids[0] != table.unk_id and ids[4] != table.unk_id
    assert table.decode([len(table), -1, 10**9]) == [UNK] * 3
    assert table.unknown(["h", "ʘ", "ʘ", "q̃"]) == ["ʘ", "q̃"]
    with pytest.raises(TypeError):
        table.encode("hello")  # a str is not a symbol sequence


def test_save_load_round_trip(table: PhonemeTable, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "phonemes.json"
    table.save(path)
    loaded = PhonemeTable.load(path)
    assert loaded == table and loaded.fingerprint() == table.fingerprint()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["symbols"][0] == PAD and data["fingerprint"] == table.fingerprint()
    assert [p.name for p in path.parent.iterdir()] == ["phonemes.json"]  # no temporary file left behind
    assert PhonemeTable.from_json(table.to_json()) == table
    assert PhonemeTable.from_json(json.dumps(table.to_json())) == table


def test_load_rejects_bad_tables(table: PhonemeTable, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        PhonemeTable.load(tmp_path / "missing.json")
    bad = table.to_json()
    bad["symbols"] = bad["symbols"][:-1]  # fingerprint no longer matches
    with pytest.raises(ConfigError, match="fingerprint"):
        PhonemeTable.from_json(bad)
    with pytest.raises(ConfigError):
        PhonemeTable(["a", "b"])  # special tokens missing
    with pytest.raises(ConfigError):
        PhonemeTable(list(SPECIAL_TOKENS) + ["a", "a"])
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        PhonemeTable.load(tmp_path / "junk.json")


def test_extended_keeps_ids(table: PhonemeTable) -> None:
    bigger = table.extended(["ʘ", "ǀ", "h", "ʘ"])  # "h" exists, "ʘ" repeated: only two are new
    assert len(bigger) == len(table) + 2
    assert bigger.symbols[: len(table)] == table.symbols
    assert bigger.encode(["ʘ", "ǀ"]) == [len(table), len(table) + 1]
    assert bigger.fingerprint() != table.fingerprint()
    assert table.encode(["ʘ"]) == [table.unk_id]  # the original is unchanged
    assert table.extended(["h", "ə"]) == table
    assert bigger.extended(["ʘ"]) == bigger


# ---------------------------------------------------------------------------------------------- chunking


LONG_TEXT = (
    "Mr. Smith went to Washington. It was a long, long trip; he took the train, which was slow, "
    "and arrived late at night, tired and hungry. Yes! Then he slept."
)


def test_chunks_split_at_sentences() -> None:
    chunks = split_into_chunks(LONG_TEXT, max_chars=200, min_chars=10)
    assert chunks[0] == "Mr. Smith went to Washington."  # "Mr." does not end a sentence
    assert chunks[-1] == "Yes! Then he slept."  # the tiny "Yes!" merged into a neighbour
    assert " ".join(chunks) == LONG_TEXT


def test_chunks_split_at_clauses_then_words() -> None:
    chunks = split_into_chunks(LONG_TEXT, max_chars=40, min_chars=5)
    assert all(len(c) <= 40 for c in chunks)
    assert "It was a long, long trip;" in chunks
    assert " ".join(chunks) == LONG_TEXT
    words = split_into_chunks("one two three four five six seven eight nine ten", max_chars=10, min_chars=0)
    assert words == ["one two", "three four", "five six", "seven", "eight nine", "ten"]


def test_over_long_word_is_kept_whole() -> None:
    chunks = split_into_chunks("a Pneumonoultramicroscopicsilicovolcanoconiosis b", max_chars=10, min_chars=0)
    assert "Pneumonoultramicroscopicsilicovolcanoconiosis" in chunks


def test_chunk_budget_in_seconds() -> None:
    chunks = split_into_chunks(LONG_TEXT, max_seconds=2.0, chars_per_second=15.0)
    assert all(len(c) <= 30 for c in chunks)
    with pytest.raises(ConfigError):
        split_into_chunks(LONG_TEXT, max_chars=10, max_seconds=1.0)
    with pytest.raises(ConfigError):
        split_into_chunks(LONG_TEXT, max_chars=10, min_chars=20)


def test_unspeakable_pieces_join_neighbours() -> None:
    chunks = split_into_chunks("Hello there. 😀 ... — Next one here.", max_chars=15, min_chars=0)
    assert all(has_speakable(c) for c in chunks)
    assert " ".join(chunks) == "Hello there. 😀 ... — Next one here."


@pytest.mark.parametrize("text", ["", "   ", "😀", "... !!! ---", "\n\t"])
def test_chunking_unspeakable_raises(text: str) -> None:
    with pytest.raises(TextError):
        split_into_chunks(text)


_WORDS = st.one_of(
    st.text(alphabet="abcdefghijXYZ0123456789'-", min_size=1, max_size=14),
    st.sampled_from([".", ",", ";", ":", "!", "?", "—", "...", "😀", "Mr.", "e.g.", '"quoted"', "(aside)", "end."]),
    st.text(alphabet="abcde", min_size=1, max_size=6).map(lambda w: w + "."),
    st.text(alphabet="abcde", min_size=1, max_size=6).map(lambda w: w + ","),
)
_SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " \n "])


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(_WORDS, min_size=1, max_size=60),
    seps=st.lists(_SEPARATORS, min_size=60, max_size=60),
    max_chars=st.integers(min_value=1, max_value=120),
    min_fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_chunking_never_loses_text(words: list[str], seps: list[str], max_chars: int, min_fraction: float) -> None:
    text = "".join(w + s for w, s in zip(words, seps))
    min_chars = int(max_chars * min_fraction)
    if not has_speakable(text):
        with pytest.raises(TextError):
            split_into_chunks(text, max_chars=max_chars, min_chars=min_chars)
        return
    chunks = split_into_chunks(text, max_chars=max_chars, min_chars=min_chars)
    assert " ".join(chunks) == " ".join(text.split())
    for chunk in chunks:
        assert chunk == chunk.strip() and chunk
        assert has_speakable(chunk)
        if len(chunk) > max_chars:
            # Only a single word over budget (plus punctuation-only words glued to it) may exceed it.
            assert sum(has_speakable(w) for w in chunk.split()) == 1
