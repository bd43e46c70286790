"""Real English sentences for the synthetic corpus, from offline Debian packages.

Two sources, both plain text on disk:
- `wordnet-base`: every synset's gloss (`/usr/share/wordnet/data.{noun,verb,adj,adv}`) holds definitions and quoted
  example sentences ("the team is a unit"); both become sentences.
- `fortunes`: `/usr/share/games/fortunes/*`, entries separated by `%` lines. The offensive `off/` folder, ascii art
  and non-English files are skipped, and so is any entry that does not read as prose.

Every candidate goes through `clean_sentence`; the survivors are de-duplicated case- and punctuation-insensitively.
`load_sentences()` returns them in source order (WordNet noun, verb, adj, adv, then fortune files by name); the
corpus planner shuffles them with its seed.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_PARTS = ("noun", "verb", "adj", "adv")

MIN_WORDS = 6  # shorter fragments make poor TTS examples and are hard for recognisers to check
MAX_WORDS = 30

# Fortune files that are not English prose: pictures, and jokes in Latin/French/German.
SKIP_FORTUNE_FILES = frozenset({"ascii-art", "translate-me"})

# Typographic characters mapped to ASCII before the "ASCII-ish" test, so that a curly quote costs no sentence.
_ASCII_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "`": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2013": "-", "\u2014": " -- ", "\u2015": " -- ", "\u2212": "-",
        "\u2026": "...", "\u00a0": " ", "\t": " ",
    }
)
# Characters that mark code, markup, maths or ascii art: espeak would read them out (or, for `[[`, take the
# text as phoneme input), and a transcript with them is not speech.
_CODE_CHARS = re.compile(r"[\[\](){}<>|\\_=^~@#*$/+&%]")
_URL = re.compile(r"(https?:|ftp:|www\.|\.(com|org|net|edu|gov)\b|\w\.\w+\(|::)", re.IGNORECASE)
# A token with digits is fine when it is a plain number, year or ordinal ("1990", "3rd", "1920s").
_NUMBER_TOKEN = re.compile(r"^[(\"']?\d{1,4}(,\d{3})*(st|nd|rd|th|s)?[)\"'.,;:!?]*$")
_MAX_NUMBER_TOKENS = 2
_ATTRIBUTION_LINE = re.compile(r"^\s*(--|\u2014|-\s+[A-Z])")
# "... end of quote. -- Mark Twain, 'Letters'" on the entry's last line.
_INLINE_ATTRIBUTION = re.compile(r"([.!?\"'])\s+--\s*[A-Z][^.!?]*[.!?]?\s*$")
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_DIALOGUE_LABEL = re.compile(r"^\s*[A-Za-z][\w .'-]{0,20}:\s")
_TERMINAL = ".!?"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGIT = re.compile(r"\d")
_OVERSTRIKE = re.compile(r".\x08")
_FIRST_LETTER = re.compile(r"[A-Za-z]")
_LONE_PUNCT = re.compile(r"(?:^| )[^\w ](?= |$)")
_ASCII_BYTES = bytes(range(128))
_NON_LETTERS = bytes(b for b in _ASCII_BYTES if not chr(b).isalpha())
_NON_UPPER = bytes(b for b in _ASCII_BYTES if not chr(b).isupper())


def _to_ascii(text: str) -> str:
    """Map typographic punctuation to ASCII and strip accents; other non-ASCII characters are left in place."""
    text = text.translate(_ASCII_MAP)
    if text.isascii():  # the common case: skip the (slow) Unicode decomposition
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def dedup_key(sentence: str) -> str:
    """The key two sentences must share to count as duplicates: lower case, letters and digits only."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", sentence.lower()).split())


def clean_sentence(text: str) -> str | None:
    """Normalise one candidate sentence, or return None when it is not usable speech text.

    Keeps ASCII prose of `MIN_WORDS`..`MAX_WORDS` words without URLs, code-like characters or many numbers;
    strips bracketed asides, collapses whitespace, capitalises the first letter and ends it with punctuation.
    """
    # Cheap tests first and C-level string methods throughout: this runs on ~200k candidates per load.
    if "\x08" in text:
        text = _OVERSTRIKE.sub("", text)  # nroff overstrike ("_\bx" underlines) in some fortune files
    if not text.isascii():
        text = _to_ascii(text)
    if "(" in text or "[" in text:
        # Asides in brackets are notes ("(astronomy)", "[Ed.]"), not part of what is said.
        text = _BRACKETED.sub(" ", text)
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    text = " ".join(words)
    if not text.isascii() or _CONTROL.search(text) or text.startswith("..."):  # "..." = a cut-out fragment
        return None
    if _CODE_CHARS.search(text) or _URL.search(text):
        return None
    if _DIGIT.search(text):
        numbers = [w for w in words if _DIGIT.search(w)]
        if len(numbers) > _MAX_NUMBER_TOKENS or not all(_NUMBER_TOKEN.match(w) for w in numbers):
            return None
    raw = text.encode("ascii")
    letters = len(raw.translate(None, _NON_LETTERS))
    # Mostly punctuation/symbols ("-- :-) --") or shouting in capitals are not sentences to read.
    if letters < 0.6 * (len(raw) - len(words) + 1) or len(raw.translate(None, _NON_UPPER)) > 0.5 * letters:
        return None
    if len(_LONE_PUNCT.findall(text)) > 1:  # stray dashes and dots between words
        return None
    if text.count('"') % 2:  # an unbalanced quote says the text was cut: drop the quote marks
        text = text.replace('"', "")
    text = text.strip(" -,;:")
    first = _FIRST_LETTER.search(text)
    if first is None:
        return None
    index = first.start()  # capitalise the first letter, even behind a leading quote mark
    text = text[:index] + text[index].upper() + text[index + 1 :]
    if text.rstrip("\"')")[-1:] not in _TERMINAL:
        text += "."
    return text if MIN_WORDS <= len(text.split()) <= MAX_WORDS else None


def _wordnet_candidates(path: Path) -> Iterator[str]:
    """Definitions and quoted examples of every synset in one WordNet data file, in file order."""
    for _, text in _tagged_wordnet_candidates(path):
        yield text


def _tagged_wordnet_candidates(path: Path) -> Iterator[tuple[str, str]]:
    """`(source, text)` for the quoted examples (`wordnet-example`) and definitions (`wordnet-gloss`)."""
    with path.open("rb") as handle:
        for raw in handle:
            if raw.startswith(b"  "):  # the licence header
                continue
            line = raw.decode("utf-8", errors="replace")
            _, sep, gloss = line.partition(" | ")
            if not sep:
                continue
            # Quoted examples may contain ';', so split them off before splitting definitions on ';'.
            for piece in re.split(r'("[^"]*")', gloss.strip()):
                piece = piece.strip()
                if piece.startswith('"') and piece.endswith('"') and len(piece) > 1:
                    yield "wordnet-example", piece[1:-1]
                    continue
                for part in piece.split(";"):
                    part = part.strip()
                    # "- Peter S. Prescott" after a quote is the quote's author, not a definition.
                    if part and not part.startswith("-"):
                        yield "wordnet-gloss", part


def _is_verse_or_dialogue(lines: list[str]) -> bool:
    """True for poems (short lines each starting a capital) and scripts ("A: ...", "B: ...")."""
    if sum(bool(_DIALOGUE_LABEL.match(line)) for line in lines) >= 2:
        return True
    if len(lines) < 2:
        return False
    verse_breaks = sum(
        nxt.lstrip()[:1].isupper() and prev.rstrip()[-1:] not in ".!?" for prev, nxt in zip(lines, lines[1:])
    )
    return verse_breaks >= max(1, (2 * (len(lines) - 1) + 2) // 3)


def clean_fortune(entry: str) -> str | None:
    """Turn one fortune entry into a sentence: drop its attribution and notes, reject verse and dialogue."""
    lines: list[str] = []
    for line in entry.splitlines():
        if _ATTRIBUTION_LINE.match(line):
            break  # "\t\t-- Mark Twain" and everything after it is the source, not the saying
        if line.strip():
            lines.append(line)
    if not lines or _is_verse_or_dialogue(lines):
        return None
    # A word hyphenated across a line break ("toilet-\ntrained") stays one word.
    text = " ".join(re.sub(r"(?<=[a-z]-)\s*\n\s*", "", "\n".join(lines)).split())
    text = _INLINE_ATTRIBUTION.sub(r"\1", text)
    return clean_sentence(text)


def _prose_file(path: Path) -> bool:
    """Whether a fortune file is mostly prose: letters and spaces make most of it (ascii art does not)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    visible = len(re.sub(r"[\s%]+", "", text))
    return visible > 0 and len(re.findall(r"[^\W\d_]", text)) >= 0.7 * visible


def _fortune_paths(directory: Path) -> list[Path]:
    """Candidate fortune files by name, sorted: no `.dat`/`.u8`, no `off/` folder, not on the skip list."""
    if not directory.is_dir():
        return []
    # Fortune files have no extension; `.dat` is the index and `.u8` a symlink to the same text.
    return [
        path
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.suffix and path.name not in SKIP_FORTUNE_FILES
    ]


def fortune_files(directory: Path = FORTUNES_DIR) -> list[Path]:
    """The plain fortune files worth reading, sorted by name: the candidates that are mostly prose."""
    return [path for path in _fortune_paths(Path(directory)) if _prose_file(path)]


def _fortune_candidates(path: Path) -> Iterator[str | None]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    for entry in re.split(r"(?m)^%\s*$", text):
        yield clean_fortune(entry)


def unique_sentences(candidates: Iterable[str | None]) -> list[str]:
    """Keep the first of every group of duplicates (by `dedup_key`), in input order; None entries are skipped."""
    seen: set[str] = set()
    result: list[str] = []
    for sentence in candidates:
        if sentence is None:
            continue
        key = dedup_key(sentence)
        if key and key not in seen:
            seen.add(key)
            result.append(sentence)
    return result


def _all_candidates(wordnet_dir: Path, fortunes_dir: Path) -> Iterator[tuple[str, str | None]]:
    for part in WORDNET_PARTS:
        path = wordnet_dir / f"data.{part}"
        if path.is_file():
            yield from ((source, clean_sentence(text)) for source, text in _tagged_wordnet_candidates(path))
    for path in fortune_files(fortunes_dir):
        yield from (("fortune", text) for text in _fortune_candidates(path))


def _unique_tagged(candidates: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """`unique_sentences` over `(source, sentence)` pairs: the first source of a duplicate wins."""
    pairs = list(candidates)
    sources = {}
    for source, sentence in pairs:
        if sentence is not None:
            sources.setdefault(sentence, source)
    return [(sources[sentence], sentence) for sentence in unique_sentences(sentence for _, sentence in pairs)]


def _cache_key(wordnet_dir: Path, fortunes_dir: Path) -> str:
    """Changes whenever a source file or this module's code does, so a stale cache is never read."""
    digest = hashlib.sha1(Path(__file__).read_bytes())
    sources = [wordnet_dir / f"data.{part}" for part in WORDNET_PARTS] + _fortune_paths(fortunes_dir)
    for path in sources:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


@functools.lru_cache(maxsize=4)
def _load(wordnet_dir: str, fortunes_dir: str, use_cache: bool) -> tuple[tuple[str, str], ...]:
    if not use_cache:
        return tuple(_unique_tagged(_all_candidates(Path(wordnet_dir), Path(fortunes_dir))))
    from flexitts.fileio import cache_dir

    cache = cache_dir() / "sentences" / f"{_cache_key(Path(wordnet_dir), Path(fortunes_dir))}.txt"
    try:
        return tuple(tuple(line.split("\t", 1)) for line in cache.read_text(encoding="utf-8").splitlines())  # type: ignore[misc]
    except OSError:
        pass
    sentences = tuple(_unique_tagged(_all_candidates(Path(wordnet_dir), Path(fortunes_dir))))
    try:
        from flexitts.fileio import write_text_atomic

        write_text_atomic(cache, "".join(f"{source}\t{line}\n" for source, line in sentences))
        for stale in cache.parent.glob("*.txt"):  # made from older sources or code: never read again
            if stale != cache:
                stale.unlink(missing_ok=True)
    except OSError:  # a read-only home only costs the parsing time next run
        pass
    return sentences


def load_sentences(
    wordnet_dir: str | os.PathLike = WORDNET_DIR,
    fortunes_dir: str | os.PathLike = FORTUNES_DIR,
    use_cache: bool = True,
) -> list[str]:
    """All cleaned, de-duplicated sentences in source order; deterministic. Empty when neither source is installed.

    Parsing the sources takes a few seconds, so the result is kept per process and, with `use_cache`, on disk
    under `$FLEXITTS_CACHE/sentences` (default `~/.cache/flexitts`), keyed by the sources' sizes and mtimes and by
    this module's code.
    """
    return [sentence for _, sentence in _load(os.fspath(wordnet_dir), os.fspath(fortunes_dir), use_cache)]


def load_sentence_sources(
    wordnet_dir: str | os.PathLike = WORDNET_DIR,
    fortunes_dir: str | os.PathLike = FORTUNES_DIR,
    use_cache: bool = True,
) -> dict[str, str]:
    """Where each sentence of `load_sentences()` comes from: `fortune`, `wordnet-example` or `wordnet-gloss`."""
    return {sentence: source for source, sentence in _load(os.fspath(wordnet_dir), os.fspath(fortunes_dir), use_cache)}
