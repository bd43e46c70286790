"""Splitting long text into chunks short enough to synthesise one at a time.

Order of preference for a split: sentence ends (. ! ?), then clause boundaries (, ; : and dashes) inside a
sentence that is over budget, then word boundaries as a last resort. A split only ever happens at a space, so no
word is cut and ``" ".join(chunks)`` is exactly the input with its whitespace collapsed. Chunks keep the original
(un-normalised) text; callers normalise and phonemise each chunk.
"""
from __future__ import annotations

import re

from flexitts.errors import ConfigError, TextError
from flexitts.text.normalize import TITLE_ABBREVIATIONS, has_speakable

__all__ = ["split_into_chunks", "DEFAULT_MAX_CHARS", "DEFAULT_MIN_CHARS", "DEFAULT_CHARS_PER_SECOND"]

DEFAULT_MAX_CHARS = 200
DEFAULT_MIN_CHARS = 20
# English read speech runs at about 14-16 characters a second (150 words a minute); the low end keeps an
# estimate of seconds on the safe side.
DEFAULT_CHARS_PER_SECOND = 14.0

# A word ending a sentence: terminal punctuation, optionally followed by closing quotes or brackets.
_SENTENCE_END_RE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*$")
_CLAUSE_END_RE = re.compile(r"(?:[,;:\u2014\u2013]|(?:^|\s)-+)[\"'\u201d\u2019)\]]*$")
# Periods that do not end a sentence: titles ("Mr."), "e.g."-style abbreviations and single initials ("J.").
_NON_TERMINAL = frozenset(TITLE_ABBREVIATIONS) | {"e.g.", "i.e.", "vs.", "cf.", "St.", "No."}
_INITIAL_RE = re.compile(r"^[\"'(]*[A-Z]\.$")

_SENTENCE, _CLAUSE, _WORD = 3, 2, 1


def _atoms(words: list[str]) -> list[str]:
    """Group words so that every group is speakable: unspeakable words ("—", "...", emoji) join a neighbour.

    A group is the unit the chunker never splits; it is one speakable word plus any unspeakable words after it
    (or before it, at the very start of the text).
    """
    atoms: list[str] = []
    pending = ""  # unspeakable words seen before the first speakable one
    for word in words:
        if has_speakable(word):
            atoms.append(f"{pending} {word}" if pending else word)
            pending = ""
        elif atoms:
            atoms[-1] += " " + word
        else:
            pending = f"{pending} {word}" if pending else word
    return atoms


def _boundary(atom: str) -> int:
    """How strong the break after `atom` is: sentence, clause, or plain word boundary."""
    last_word = atom.rsplit(" ", 1)[-1]
    if _SENTENCE_END_RE.search(atom) and last_word not in _NON_TERMINAL and not _INITIAL_RE.match(last_word):
        return _SENTENCE
    if _CLAUSE_END_RE.search(atom):
        return _CLAUSE
    return _WORD


def _length(atoms: list[str]) -> int:
    return sum(len(a) for a in atoms) + max(len(atoms) - 1, 0)


def _groups(atoms: list[str], level: int) -> list[list[str]]:
    """Cut `atoms` after every boundary at least as strong as `level`."""
    groups: list[list[str]] = [[]]
    for atom in atoms:
        groups[-1].append(atom)
        if _boundary(atom) >= level:
            groups.append([])
    return [g for g in groups if g]


def _fit(atoms: list[str], level: int, max_chars: int) -> list[list[str]]:
    """Split one span (a sentence, a clause) into pieces within `max_chars`, cutting at `level` boundaries
    first and finer ones only where a piece is still too long; adjacent small pieces are packed together."""
    if _length(atoms) <= max_chars or len(atoms) == 1:
        return [atoms]
    pieces: list[list[str]] = []
    for group in _groups(atoms, level):
        pieces.extend(_fit(group, level - 1, max_chars) if _length(group) > max_chars else [group])
    packed: list[list[str]] = []
    for piece in pieces:
        if packed and _length(packed[-1] + piece) <= max_chars:
            packed[-1] = packed[-1] + piece
        else:
            packed.append(piece)
    return packed


def _merge_tiny(chunks: list[list[str]], min_chars: int, max_chars: int) -> list[list[str]]:
    """Merge chunks shorter than `min_chars` into the shorter neighbour when the result stays within budget."""
    chunks = list(chunks)
    i = 0
    while i < len(chunks):
        if _length(chunks[i]) >= min_chars or len(chunks) == 1:
            i += 1
            continue
        options = []
        if i > 0 and _length(chunks[i - 1] + chunks[i]) <= max_chars:
            options.append((_length(chunks[i - 1]), i - 1))
        if i + 1 < len(chunks) and _length(chunks[i] + chunks[i + 1]) <= max_chars:
            options.append((_length(chunks[i + 1]), i + 1))
        if not options:
            i += 1
            continue
        _, j = min(options)
        first = min(i, j)
        chunks[first : first + 2] = [chunks[first] + chunks[first + 1]]
        i = first  # the merged chunk may still be tiny
    return chunks


def split_into_chunks(
    text: str,
    max_chars: int | None = None,
    min_chars: int | None = None,
    *,
    max_seconds: float | None = None,
    chars_per_second: float = DEFAULT_CHARS_PER_SECOND,
) -> list[str]:
    """Split `text` into speakable chunks of at most `max_chars` characters (default 200).

    Alternatively give a budget in seconds: ``max_seconds * chars_per_second`` characters. A chunk is longer than
    the budget only when it is a single word that alone exceeds it (with any punctuation-only words attached).
    Chunks shorter than `min_chars` (default: 20, at most half the budget) are merged into a neighbour when that
    keeps within the budget.
    Guarantees: every chunk is speakable, and ``" ".join(chunks) == " ".join(text.split())``.
    Raises `TextError` when the text has nothing speakable.
    """
    if max_chars is not None and max_seconds is not None:
        raise ConfigError("give either max_chars or max_seconds, not both")
    if max_seconds is not None:
        if not (max_seconds > 0 and chars_per_second > 0):
            raise ConfigError(
                f"max_seconds and chars_per_second must be positive, got {max_seconds} and {chars_per_second}"
            )
        max_chars = max(1, int(max_seconds * chars_per_second))
    elif max_chars is None:
        max_chars = DEFAULT_MAX_CHARS
    if max_chars < 1:
        raise ConfigError(f"max_chars must be at least 1, got {max_chars}")
    if min_chars is None:
        min_chars = min(DEFAULT_MIN_CHARS, max_chars // 2)
    if min_chars < 0 or min_chars > max_chars:
        raise ConfigError(f"min_chars must be between 0 and max_chars ({max_chars}), got {min_chars}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")

    atoms = _atoms(text.split())
    if not atoms:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise TextError(f"text has nothing speakable (no letters or digits): {shown!r}")
    chunks: list[list[str]] = []
    for sentence in _groups(atoms, _SENTENCE):
        chunks.extend(_fit(sentence, _CLAUSE, max_chars))
    return [" ".join(chunk) for chunk in _merge_tiny(chunks, min_chars, max_chars)]
