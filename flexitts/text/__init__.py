"""Text frontend: normalisation, chunking, phonemisation (espeak-ng) and the phoneme symbol table.

Typical use::

    from flexitts.text import PhonemeTable, phonemize, split_into_chunks
    table = PhonemeTable.default()
    for chunk in split_into_chunks(long_text):
        ids = table.encode(phonemize(chunk))

Importing this package is cheap: `phonemizer` and espeak-ng are loaded on the first call to `phonemize`.
"""
from __future__ import annotations

from flexitts.text.chunking import DEFAULT_CHARS_PER_SECOND, DEFAULT_MAX_CHARS, DEFAULT_MIN_CHARS, split_into_chunks
from flexitts.text.normalize import has_speakable, normalize_text
from flexitts.text.phonemize import (
    DEFAULT_LANGUAGE,
    PUNCTUATION_MARKS,
    STRESS_MARKS,
    WORD_BOUNDARY,
    phonemize,
    phonemize_batch,
    tokens_from_espeak,
)
from flexitts.text.symbols import EOS, PAD, SEP, SOS, SPECIAL_TOKENS, TASK, UNK, PhonemeTable, phones_only

__all__ = [
    "normalize_text",
    "has_speakable",
    "phonemize",
    "phonemize_batch",
    "phones_only",
    "tokens_from_espeak",
    "PhonemeTable",
    "split_into_chunks",
    "DEFAULT_LANGUAGE",
    "WORD_BOUNDARY",
    "STRESS_MARKS",
    "PUNCTUATION_MARKS",
    "SPECIAL_TOKENS",
    "PAD",
    "UNK",
    "SOS",
    "EOS",
    "TASK",
    "SEP",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MIN_CHARS",
    "DEFAULT_CHARS_PER_SECOND",
]
