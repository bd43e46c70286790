"""Phonemisation with espeak-ng (through the `phonemizer` package) into a deterministic list of symbol tokens.

Token format (what `phonemize` returns), e.g. for "Hello, world!" in en-us::

    ['h', 'ə', 'l', 'ˈ', 'oʊ', ',', ' ', 'w', 'ˈ', 'ɜː', 'l', 'd', '!']

- Phones are exactly as espeak-ng splits them when asked for a phone separator: affricates ("tʃ", "dʒ"),
  diphthongs ("oʊ", "aɪə") and r-coloured vowels ("ɑːɹ") are single tokens, and the length mark "ː" stays
  attached to its vowel ("ɜː").
- Stress marks "ˈ" (primary) and "ˌ" (secondary) are tokens of their own, placed before the vowel they stress
  (espeak prints them glued to it). Separate tokens keep the inventory small: one "oʊ" instead of "oʊ", "ˈoʊ" and
  "ˌoʊ", so every vowel's embedding sees all of its training data.
- Word boundaries are the token " " (`WORD_BOUNDARY`), one between consecutive words, never at either end.
- Punctuation (". , ! ? ; : " ( ) — ¡ ¿" after normalisation) is one token per character, placed where it stood in
  the text, with " " where the text had a space. A dash used as punctuation (" - ") becomes "—". Punctuation is
  cut out before espeak and put back after by this module (not phonemizer's `preserve_punctuation`, which
  misplaces marks after decimal numbers); a "." or "," inside a number stays with it ("4.5" -> "four point five").
- Letters of scripts foreign to the language (e.g. Chinese characters in English text) are dropped before espeak:
  espeak-ng 1.51 would read them as "Chinese letter", and some of them corrupt its state for all later calls.

Creating an `EspeakBackend` costs tens of milliseconds and loads the espeak-ng library, so backends are created on
first use, one per language, cached for the life of the process, and never at import time.
"""
from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from typing import Any, Sequence

from flexitts.errors import ConfigError, DependencyError, TextError
from flexitts.text.normalize import normalize_text

__all__ = [
    "phonemize",
    "phonemize_batch",
    "tokens_from_espeak",
    "DEFAULT_LANGUAGE",
    "WORD_BOUNDARY",
    "STRESS_MARKS",
    "PUNCTUATION_MARKS",
]

DEFAULT_LANGUAGE = "en-us"
WORD_BOUNDARY = " "
STRESS_MARKS: tuple[str, ...] = ("ˈ", "ˌ")
# phonemizer's default punctuation marks. These and any other Unicode punctuation (category P) become tokens of
# their own, except the apostrophe and hyphen inside words, and "." or "," inside numbers.
PUNCTUATION_MARKS: str = ';:,.!?¡¿—…"«»“”(){}[]'

# Separators asked of espeak: "|" between phones, " " between words. Neither occurs inside espeak-ng's IPA
# symbols, and normalisation removes "|" from the input.
_PHONE_SEP = "|"
_WORD_SEP = " "
_INSTALL_HINT = "install espeak-ng (`make setup` or `apt-get install espeak-ng`)"
_STANDALONE_HYPHEN_RE = re.compile(r"(?:(?<=\s)|^)-+(?=\s|$)")

# Latin (with combining diacritics and Latin Extended Additional) is read by every espeak-ng voice.
_LATIN: tuple[tuple[int, int], ...] = ((0x0000, 0x024F), (0x0300, 0x036F), (0x1E00, 0x1EFF))
_CYRILLIC = ((0x0400, 0x052F),)
_ARABIC = ((0x0600, 0x06FF), (0x0750, 0x077F))
_DEVANAGARI = ((0x0900, 0x097F),)
_CJK = ((0x4E00, 0x9FFF),)
# The script of each non-Latin language, by the language code's first part ("ru" for "ru", "cmn" for "cmn").
_NATIVE_SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "el": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)), "grc": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    **{code: _CYRILLIC for code in ("ru", "uk", "bg", "be", "mk", "sr", "kk", "ky", "tt", "ba", "cv", "mn")},
    **{code: _ARABIC for code in ("ar", "fa", "ur", "ps", "sd", "ug")},
    **{code: _DEVANAGARI for code in ("hi", "mr", "ne", "sa", "kok", "mai")},
    "he": ((0x0590, 0x05FF),), "hy": ((0x0530, 0x058F),), "ka": ((0x10A0, 0x10FF),),
    "bn": ((0x0980, 0x09FF),), "as": ((0x0980, 0x09FF),), "bpy": ((0x0980, 0x09FF),),
    "pa": ((0x0A00, 0x0A7F),), "gu": ((0x0A80, 0x0AFF),), "or": ((0x0B00, 0x0B7F),), "ta": ((0x0B80, 0x0BFF),),
    "te": ((0x0C00, 0x0C7F),), "kn": ((0x0C80, 0x0CFF),), "ml": ((0x0D00, 0x0D7F),), "si": ((0x0D80, 0x0DFF),),
    "th": ((0x0E00, 0x0E7F),), "my": ((0x1000, 0x109F),), "am": ((0x1200, 0x137F),), "chr": ((0x13A0, 0x13FF),),
    "ja": ((0x3040, 0x30FF),) + _CJK, "cmn": _CJK, "yue": _CJK, "hak": _CJK, "zh": _CJK,
    "ko": ((0xAC00, 0xD7A3),),
}

_backends: dict[str, Any] = {}
# espeak-ng is a C library with global state: one lock serialises backend creation and every call into it.
_lock = threading.RLock()


def _create_backend(language: str) -> Any:
    """Build an EspeakBackend for `language`, translating installation problems into FlexiTTS errors."""
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError as exc:  # the Python package itself is missing
        raise DependencyError(
            f"the phonemizer package is not installed ({exc}); run `make setup` or `pip install phonemizer`"
        ) from None
    if not EspeakBackend.is_available():
        raise DependencyError(f"espeak-ng was not found; {_INSTALL_HINT}")
    try:
        supported = EspeakBackend.supported_languages()
    except RuntimeError as exc:
        raise DependencyError(f"espeak-ng is not usable ({exc}); {_INSTALL_HINT}") from None
    if language not in supported:
        raise ConfigError(
            f"language {language!r} is not supported by espeak-ng; use a code such as 'en-us', 'en-gb', 'fr-fr', 'de'"
        )
    # A dedicated quiet logger: phonemizer otherwise warns on stderr about language switches and word counts.
    logger = logging.getLogger("flexitts.text.phonemizer")
    logger.setLevel(logging.ERROR)
    try:
        return EspeakBackend(
            language,
            preserve_punctuation=False,  # punctuation is cut out and put back by `_plan`/`_assemble`
            with_stress=True,
            language_switch="remove-flags",  # foreign words: keep the phones, drop "(fr)" markers
            words_mismatch="ignore",
            logger=logger,
        )
    except RuntimeError as exc:
        raise DependencyError(f"espeak-ng could not start for {language!r} ({exc}); {_INSTALL_HINT}") from None


def _backend(language: str) -> Any:
    """The cached backend for `language`, created on first use."""
    with _lock:
        backend = _backends.get(language)
        if backend is None:
            backend = _create_backend(language)
            _backends[language] = backend
        return backend


@functools.lru_cache(maxsize=4096)
def _is_punctuation(ch: str) -> bool:
    """Whether `ch` is a punctuation token rather than part of a phone."""
    # Category P covers ASCII and typographic punctuation; no IPA letter espeak-ng prints is in it.
    return ch in PUNCTUATION_MARKS or unicodedata.category(ch).startswith("P")


def _is_phone(token: str) -> bool:
    """Whether `token` is a phone (not a word boundary, stress mark or punctuation)."""
    return token != WORD_BOUNDARY and token not in STRESS_MARKS and not _is_punctuation(token[0])


def tokens_from_espeak(phonemized: str) -> list[str]:
    """Split one espeak/phonemizer output string (phones separated by "|", words by " ") into tokens.

    Deterministic and independent of espeak: the same string always gives the same tokens.
    """
    tokens: list[str] = []
    for word in phonemized.split(_WORD_SEP):
        if not word:
            continue
        if tokens and tokens[-1] != WORD_BOUNDARY:
            tokens.append(WORD_BOUNDARY)
        for piece in word.split(_PHONE_SEP):
            phone = ""
            for ch in piece:
                if ch in STRESS_MARKS or _is_punctuation(ch):
                    if phone:
                        tokens.append(phone)
                        phone = ""
                    tokens.append(ch)
                elif ch == "ː" and not phone and tokens and _is_phone(tokens[-1]):
                    tokens[-1] += ch  # a detached length mark belongs to the phone before it
                else:
                    phone += ch
            if phone:
                tokens.append(phone)
    while tokens and tokens[-1] == WORD_BOUNDARY:
        tokens.pop()
    return tokens


def _script_ranges(language: str) -> tuple[tuple[int, int], ...]:
    """Code-point ranges whose characters may reach espeak-ng for `language`: Latin plus the language's script."""
    return _LATIN + _NATIVE_SCRIPTS.get(language.split("-")[0].lower(), ())


def _drop_foreign_scripts(text: str, language: str) -> str:
    """Replace letters of scripts foreign to `language` by spaces.

    espeak-ng 1.51 switches voice when it meets another script, and for some (Hangul, Hangul Jamo Extended,
    Cherokee, Syloti Nagri, mixed CJK, ...) that corrupts its state: every later text comes out garbled
    ("hello" as "hˈʌlʌ") and a later voice reset can crash the process. For TTS such letters are useless
    anyway: in English espeak-ng reads each one as "Chinese letter" or the like.
    """
    ranges = _script_ranges(language)

    def allowed(ch: str) -> bool:
        code = ord(ch)
        return any(lo <= code <= hi for lo, hi in ranges)

    if all(ord(ch) < 0x250 for ch in text):  # fast path: Latin and ASCII only
        return text
    def is_letter(ch: str) -> bool:
        return ch.isalnum() or unicodedata.category(ch)[0] == "M"

    return "".join(" " if is_letter(ch) and not allowed(ch) else ch for ch in text)


def _prepare(text: str, index: int, normalize: bool, language: str) -> str:
    """Normalise one text for espeak and reject it when nothing in it can be spoken."""
    prepared = normalize_text(text) if normalize else " ".join(text.split())
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not any(ch.isalnum() for ch in prepared):
        raise TextError(f"text #{index} has nothing speakable (no letters or digits): {shown!r}")
    prepared = " ".join(_drop_foreign_scripts(prepared, language).split())
    if not any(ch.isalnum() for ch in prepared):
        raise TextError(f"text #{index} has no letters or digits that espeak-ng can pronounce in {language}: {shown!r}")
    # A dash used as punctuation: espeak ignores "-", so it becomes the pause token "—".
    return _STANDALONE_HYPHEN_RE.sub("—", prepared)


def _is_mark_at(text: str, i: int) -> bool:
    """Whether text[i] is a punctuation token. Apostrophes and hyphens belong to words ("it's", "well-known");
    a "." or "," between digits is a decimal or thousands separator that espeak must see ("4.5", "1,000")."""
    ch = text[i]
    if ch in "'-" or not _is_punctuation(ch):
        return False
    if ch in ".," and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
        return False
    return True


def _plan(text: str, segments: list[str]) -> list[str | int]:
    """Cut `text` into punctuation tokens, word boundaries and punctuation-free segments for espeak.

    Returns the layout as a list of literal tokens (a mark or " ") and ints (indices of segments appended to
    `segments`). Punctuation is handled here rather than by phonemizer's `preserve_punctuation`: phonemizer 3.4
    splits a line at the first "." it finds, so "NT 5.0 for Intel.with" came back as two lines with the mark in
    the wrong place, misaligning a whole batch.
    """
    items: list[str | int] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            items.append(WORD_BOUNDARY)
            i += 1
        elif _is_mark_at(text, i):
            items.append(text[i])
            i += 1
        else:
            j = i
            while j < n and not _is_mark_at(text, j):
                j += 1
            segment = text[i:j].rstrip()
            if any(ch.isalnum() for ch in segment):  # espeak prints nothing for a lone apostrophe or hyphen
                items.append(len(segments))
                segments.append(segment)
            i += len(segment)
    return items


def _assemble(items: list[str | int], phonemized: list[str]) -> list[str]:
    """Fill a `_plan` layout with the segments' phones; collapse and trim word boundaries."""
    tokens: list[str] = []
    for item in items:
        for tok in tokens_from_espeak(phonemized[item]) if isinstance(item, int) else [item]:
            if tok == WORD_BOUNDARY and (not tokens or tokens[-1] == WORD_BOUNDARY):
                continue
            tokens.append(tok)
    while tokens and tokens[-1] == WORD_BOUNDARY:
        tokens.pop()
    return tokens


def _run_espeak(backend: Any, segments: list[str], njobs: int) -> list[str]:
    """Phonemise punctuation-free segments in one call; one output string per segment, in order."""
    from phonemizer.separator import Separator

    separator = Separator(phone=_PHONE_SEP, word=_WORD_SEP, syllable=None)
    with _lock:
        outputs = backend.phonemize(segments, separator=separator, strip=True, njobs=njobs)
        if len(outputs) != len(segments):
            # phonemizer drops lines for which espeak printed nothing, which would misalign the batch;
            # redo them one by one so that each result stays with its segment.
            outputs = [(backend.phonemize([seg], separator=separator, strip=True) or [""])[0] for seg in segments]
    return outputs


def phonemize_batch(
    texts: Sequence[str], language: str = DEFAULT_LANGUAGE, *, njobs: int = 1, normalize: bool = True
) -> list[list[str]]:
    """Phonemise many texts with one call into espeak-ng; returns one token list per text, in order.

    Use this for a corpus: about 0.25 ms a sentence (1,000 sentences of ~70 characters in 0.25 s). `njobs > 1`
    hands the batch to phonemizer's process pool; measured on 2 cores it was slower up to 20,000 sentences
    (process start-up, and half the time is this module's own Python pre- and post-processing).
    Results never depend on the other texts in the batch. Texts are normalised with `normalize_text` first
    unless `normalize=False`. Raises `TextError` naming the first text with nothing speakable, `DependencyError`
    without espeak-ng, `ConfigError` for a language espeak-ng does not know.
    """
    if isinstance(texts, str):
        raise TypeError("phonemize_batch takes a sequence of texts; use phonemize() for one text")
    segments: list[str] = []
    plans = [_plan(_prepare(t, i, normalize, language), segments) for i, t in enumerate(texts)]
    if not plans:
        return []
    outputs = _run_espeak(_backend(language), segments, njobs)
    results: list[list[str]] = []
    for i, (text, items) in enumerate(zip(texts, plans)):
        tokens = _assemble(items, outputs)
        if not any(_is_phone(t) for t in tokens):
            raise TextError(f"text #{i} has nothing espeak-ng can pronounce: {text[:40]!r}")
        results.append(tokens)
    return results


def phonemize(text: str, language: str = DEFAULT_LANGUAGE, *, normalize: bool = True) -> list[str]:
    """Phonemise one text into tokens (see the module docstring for their format).

    Raises `TextError` when the text is empty or has nothing speakable (whitespace, emoji, punctuation only).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    try:
        return phonemize_batch([text], language, normalize=normalize)[0]
    except TextError as exc:
        # Say "text", not "text #0", for a single text.
        raise TextError(str(exc).replace("text #0", "text", 1)) from None
