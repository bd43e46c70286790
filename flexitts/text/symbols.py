"""The phoneme symbol table: a fixed, data-independent mapping between phoneme tokens and integer ids.

Layout of the default table (ids never change; new symbols are only ever appended):

1. special tokens: ``<pad>`` = 0, ``<unk>``, ``<sos>``, ``<eos>``, ``<task>``, ``<sep>``;
2. the word boundary " ", stress marks "ˈ" "ˌ" and punctuation;
3. every phone espeak-ng prints for English (en-us, en-gb and the other English voices), found by phonemising
   about 370,000 texts (fortune files, WordNet glosses and lemmas) with each voice;
4. further IPA letters espeak-ng prints for foreign words and names inside English text, so that such words
   do not fall back to ``<unk>``.

Other languages add their phones with `PhonemeTable.extended`, which appends and so keeps every existing id.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Iterable, Iterator, Sequence

from flexitts.errors import ConfigError
from flexitts.fileio import write_json_atomic

__all__ = ["PhonemeTable", "SPECIAL_TOKENS", "PAD", "UNK", "SOS", "EOS", "TASK", "SEP", "DEFAULT_SYMBOLS"]

PAD, UNK, SOS, EOS, TASK, SEP = "<pad>", "<unk>", "<sos>", "<eos>", "<task>", "<sep>"
# <task> separates the text from the speech tokens in the AR sequence; <sep> separates a reference transcript
# from the new text when both are given.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, SOS, EOS, TASK, SEP)

# Word boundary, stress, then punctuation: the marks phonemizer keeps, plus "'" and "-" for unnormalised input.
_PROSODIC: tuple[str, ...] = (
    " ", "ˈ", "ˌ",
    ".", ",", "!", "?", ";", ":", "—", '"', "(", ")", "¡", "¿", "…", "«", "»", "“", "”", "{", "}", "[", "]",
    "'", "-",
)

# Phones of espeak-ng's English voices, grouped for reading; this order is part of the file format.
_ENGLISH_CONSONANTS: tuple[str, ...] = (
    "p", "b", "t", "d", "k", "ɡ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "tʃ", "dʒ",
    "m", "n", "ŋ", "l", "ɹ", "w", "j", "ɾ", "ʔ", "n̩", "ʍ", "t̪",
)
_ENGLISH_VOWELS_US: tuple[str, ...] = (
    "ə", "ɪ", "ɛ", "æ", "ʌ", "ɐ", "ᵻ", "ʊ", "ɔ", "i", "iː", "uː", "ɑː", "ɔː", "ɜː", "ɚ", "oː",
    "eɪ", "aɪ", "aʊ", "oʊ", "ɔɪ", "iə", "əl", "aɪə", "aɪɚ",
    "ɔːɹ", "ɑːɹ", "oːɹ", "ɛɹ", "ʊɹ", "ɪɹ",
)
_ENGLISH_VOWELS_GB: tuple[str, ...] = ("a", "ɒ", "əʊ", "eə", "ʊə", "aː")
# en-029, en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd, en-us-nyc. (en-us-nyc also glues phones of adjacent
# words after "hu..." words, e.g. "nb" in "human beings": an espeak-ng bug, deliberately not listed.)
_ENGLISH_VOWELS_OTHER: tuple[str, ...] = (
    "ɔə", "oə", "ɑə", "aa", "eː", "ɜ", "ʉ", "ʉː", "ʌʉ", "eʲ", "ʌɹ", "ʉɹ", "əɹ", "ɪʲ",
    "æʊ", "ei", "əu", "ʌʊ", "oɪ", "ɛə", "əɪ",
)
# Printed by the English voices for foreign words, letters of other scripts and repeated letters ("caaa").
_ENGLISH_RARE: tuple[str, ...] = (
    "x", "r", "ç", "ɬ", "nʲ", "ɡʲ", "o", "u", "e", "ɑ̃", "ɔ̃", "ææ", "ɐɐ", "ɛː", "ɪː",
)
# IPA letters of other European and Asian languages' espeak-ng output, so a default table covers names.
_IPA_EXTRA: tuple[str, ...] = (
    "y", "ø", "œ", "ɶ", "ɯ", "ɨ", "ɵ", "ɘ", "ɤ", "ɞ", "ʏ", "ɑ", "ɛ̃", "œ̃", "õ", "ã",
    "β", "ɣ", "ʁ", "ʀ", "χ", "ħ", "ʕ", "ɦ", "ʝ", "ɟ", "c", "q", "ɢ", "ɖ", "ʈ", "ɭ", "ʂ", "ʐ", "ɽ",
    "ɳ", "ɲ", "ʎ", "ɴ", "ɱ", "ʋ", "ɰ", "ɕ", "ʑ", "ɸ", "ts", "dz", "tɕ", "dʑ", "ɫ",
    "pʰ", "tʰ", "kʰ", "ʈʰ", "tsʰ", "tɕʰ",
)

DEFAULT_SYMBOLS: tuple[str, ...] = (
    SPECIAL_TOKENS + _PROSODIC + _ENGLISH_CONSONANTS + _ENGLISH_VOWELS_US + _ENGLISH_VOWELS_GB
    + _ENGLISH_VOWELS_OTHER + _ENGLISH_RARE + _IPA_EXTRA
)

_FORMAT = "flexitts.phoneme_table"
_VERSION = 1


class PhonemeTable:
    """An immutable, ordered table of phoneme symbols; a symbol's id is its position.

    The first entries are always `SPECIAL_TOKENS`, in that order, so ``pad_id == 0`` in every table.
    """

    def __init__(self, symbols: Sequence[str]):
        symbols = tuple(symbols)
        if symbols[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ConfigError(f"a phoneme table must start with the special tokens {list(SPECIAL_TOKENS)}")
        for s in symbols:
            if not isinstance(s, str) or not s:
                raise ConfigError(f"phoneme table symbols must be non-empty strings, got {s!r}")
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ConfigError(f"phoneme table has duplicate symbols: {dupes}")
        self._symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    # -- construction --------------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> "PhonemeTable":
        """The built-in table (one shared instance; tables are immutable)."""
        return _default_table()

    def extended(self, new_symbols: Iterable[str]) -> "PhonemeTable":
        """A new table with `new_symbols` appended (those already present are skipped); existing ids are kept."""
        if isinstance(new_symbols, str):
            new_symbols = [new_symbols]
        added: list[str] = []
        for s in new_symbols:
            if s not in self._ids and s not in added:
                added.append(s)
        return PhonemeTable(self._symbols + tuple(added)) if added else self

    # -- mapping -------------------------------------------------------------------------------------------

    def encode(self, symbols: Iterable[str]) -> list[int]:
        """Ids of `symbols` (tokens from `phonemize`); a symbol not in the table becomes ``<unk>``."""
        if isinstance(symbols, str):
            # A bare string would be split into characters silently; phonemise first.
            raise TypeError("encode takes a sequence of phoneme symbols (from phonemize), not a str")
        unk = self.unk_id
        return [self._ids.get(s, unk) for s in symbols]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols of `ids`; an id outside the table becomes ``<unk>`` (model output is never trusted blindly)."""
        n = len(self._symbols)
        return [self._symbols[i] if 0 <= (i := int(x)) < n else UNK for x in ids]

    def unknown(self, symbols: Iterable[str]) -> list[str]:
        """The distinct symbols of `symbols` that this table does not contain, in order of first appearance."""
        seen: dict[str, None] = {}
        for s in symbols:
            if s not in self._ids:
                seen.setdefault(s, None)
        return list(seen)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    @property
    def sos_id(self) -> int:
        return self._ids[SOS]

    @property
    def eos_id(self) -> int:
        return self._ids[EOS]

    @property
    def task_id(self) -> int:
        return self._ids[TASK]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP]

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhonemeTable) and self._symbols == other._symbols

    def __hash__(self) -> int:
        return hash(self._symbols)

    def __repr__(self) -> str:
        return f"PhonemeTable({len(self)} symbols, fingerprint={self.fingerprint()})"

    # -- identity and persistence --------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A short hash of the ordered symbols: equal fingerprints mean identical ids for every symbol.

        Stored beside checkpoints so a model is never fed ids from a different table.
        """
        payload = json.dumps(list(self._symbols), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description (symbols in id order plus the fingerprint)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint(),
            "symbols": list(self._symbols),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "PhonemeTable":
        """Rebuild a table from `to_json()` output (a dict, or its JSON text); checks the stored fingerprint."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"phoneme table is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("symbols"), list):
            raise ConfigError("not a FlexiTTS phoneme table (expected format, version and symbols)")
        if data.get("version") != _VERSION:
            raise ConfigError(f"phoneme table version {data.get('version')!r} is not supported (expected {_VERSION})")
        table = cls(data["symbols"])
        stored = data.get("fingerprint")
        if stored is not None and stored != table.fingerprint():
            raise ConfigError(
                f"phoneme table fingerprint mismatch: file says {stored}, its symbols give {table.fingerprint()}"
            )
        return table

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON to `path` atomically."""
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PhonemeTable":
        """Read a table written by `save`."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read phoneme table {os.fspath(path)!r}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise ConfigError(f"{os.fspath(path)}: {exc}") from None


@functools.lru_cache(maxsize=1)
def _default_table() -> PhonemeTable:
    return PhonemeTable(DEFAULT_SYMBOLS)


def phones_only(symbols: Sequence[str]) -> list[str]:
    """The phones of a phonemised text, without stress marks, word boundaries, punctuation or specials (what the
    CTC phone recogniser is trained to emit)."""
    from flexitts.text.phonemize import PUNCTUATION_MARKS, STRESS_MARKS, WORD_BOUNDARY

    dropped = set(SPECIAL_TOKENS) | set(STRESS_MARKS) | set(PUNCTUATION_MARKS) | {WORD_BOUNDARY}
    return [s for s in symbols if s not in dropped]
