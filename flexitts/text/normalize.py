"""Text normalisation: turn arbitrary user text into plain text that espeak-ng reads well.

What it does, in order: Unicode NFKC; typographic quotes, dashes and the ellipsis to ASCII; currency, percent and
a few other symbols to words; common abbreviations to words; removal of everything that cannot be spoken (emoji,
control and format characters, stray symbols); whitespace collapsed to single spaces.

Numbers stay as digits: espeak-ng reads "1998", "3rd" and "1,000" itself, and better than a naive expander would.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "has_speakable", "TITLE_ABBREVIATIONS"]

# Typographic characters -> ASCII. Dashes are handled separately because a dash between digits is a range.
_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'", "`": "'",
        "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2039": '"', "\u203a": '"',
        "\u2026": "...", "\u2010": "-", "\u2011": "-",
        "\u2215": "/",
        "[": "(", "]": ")", "{": "(", "}": ")",
        "\u00d7": " times ",
        "\u00b0": " degrees ",
    }
)

# Dash-like characters (figure/en/em dash, horizontal bar, minus sign); true hyphens map to "-" above.
_DASHES = "\u2012\u2013\u2014\u2015\u2212"
_RANGE_RE = re.compile(r"(?<=\d)[\u2012\u2013](?=\d)")  # "1990–2000" -> "1990 to 2000"
_FRACTION_RE = re.compile(r"(?<=\d)\u2044(?=\d)")  # NFKC turns "½" into "1⁄2"; say "1 over 2"
_MINUS_RE = re.compile(r"(?<![\w.])\u2212(?=\d)")  # "−5" -> "minus 5"
_DASH_RE = re.compile(rf"\s*(?:[{_DASHES}]+|-{{2,}})\s*")  # a dash used as punctuation -> " - "

_SCALE = r"(?:\s+(thousand|million|billion|trillion))?"
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "\u00a3": ("pound", "pounds", "penny", "pence"),
               "\u20ac": ("euro", "euros", "cent", "cents"), "\u00a5": ("yen", "yen", "sen", "sen")}
_CURRENCY_RE = re.compile(r"([$\u00a3\u20ac\u00a5])\s?(\d[\d,]*)(?:\.(\d{1,2}))?(?!\d)" + _SCALE, re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d)\s?%")
_HASH_NUMBER_RE = re.compile(r"#\s?(?=\d)")

# Symbols that have a spoken form wherever they appear (after the number-bound forms above).
_SYMBOL_WORDS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "=": " equals ",
                 "$": " dollars ", "\u00a3": " pounds ", "\u20ac": " euros ", "\u00a5": " yen "}

# Titles precede a name, so the period after them never ends a sentence. The chunker uses this list too.
TITLE_ABBREVIATIONS: dict[str, str] = {
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Dr.": "Doctor", "Prof.": "Professor", "Mt.": "Mount",
    "Messrs.": "Messieurs", "Capt.": "Captain", "Gen.": "General", "Lt.": "Lieutenant", "Sgt.": "Sergeant",
    "Gov.": "Governor", "Sen.": "Senator", "Rep.": "Representative", "Rev.": "Reverend", "Hon.": "Honorable",
}
# Abbreviations that may end a sentence: their period is kept when the sentence ends with them.
_OTHER_ABBREVIATIONS: dict[str, str] = {
    "etc.": "et cetera", "vs.": "versus", "e.g.": "for example", "i.e.": "that is", "cf.": "compare",
    "approx.": "approximately", "Jr.": "Junior", "Sr.": "Senior", "Inc.": "Incorporated", "Ltd.": "Limited",
    "Co.": "Company", "Corp.": "Corporation", "Ave.": "Avenue", "Rd.": "Road", "Blvd.": "Boulevard",
    "Dept.": "Department", "Univ.": "University", "a.m.": "a m", "p.m.": "p m", "A.M.": "a m", "P.M.": "p m",
}
_MID_SENTENCE_ONLY = frozenset({"vs.", "e.g.", "i.e.", "cf.", "approx."})
# Lookbehind keeps "Mr." inside "HMr." or "mr.x" from matching; matching is case-sensitive on purpose
# ("Co." is Company, "co." in running text is more likely a truncated word).
_ABBREV_RE = re.compile(
    r"(?<![\w.])("
    + "|".join(re.escape(a) for a in sorted({**TITLE_ABBREVIATIONS, **_OTHER_ABBREVIATIONS}, key=len, reverse=True))
    + r")(?!\w)"
)
_SAINT_STREET_RE = re.compile(r"(?<![\w.])St\.(?!\w)")
_NUMBER_ABBREV_RE = re.compile(r"(?<![\w.])No\.\s?(?=\d)")
# A sentence ends after an abbreviation if nothing or a new capitalised sentence follows.
_SENTENCE_FOLLOWS_RE = re.compile(r"\s*(?:$|(?=[\"')]*\s+[A-Z]))")

# Punctuation espeak/phonemizer turn into prosody (pauses, question intonation); all other symbols are dropped.
_KEEP_PUNCTUATION: frozenset[str] = frozenset(".,!?;:'\"-()\u00a1\u00bf")
# Symbols the expansions below turn into words or " - "; they must survive the first filtering pass.
_SPOKEN_SYMBOLS: frozenset[str] = frozenset("$\u00a3\u20ac\u00a5%&@+=#" + _DASHES)
_WHITESPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+(?=[.,!?;:)])")


def _expand_currency(match: re.Match[str]) -> str:
    symbol, whole, frac, scale = match.group(1), match.group(2), match.group(3), match.group(4)
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    if scale:  # "$5 million" -> "5 million dollars"; cents with a scale word are part of a decimal number
        number = whole + (f".{frac}" if frac else "")
        return f"{number} {scale.lower()} {many}"
    words = f"{whole} {one if whole == '1' else many}"
    if frac and int(frac) != 0:
        cents = str(int(frac.ljust(2, "0")))
        words += f" {cents} {sub_one if cents == '1' else sub_many}"
    return words


def _expand_abbreviation(match: re.Match[str]) -> str:
    abbrev = match.group(1)
    if abbrev in TITLE_ABBREVIATIONS:
        return TITLE_ABBREVIATIONS[abbrev]
    expansion = _OTHER_ABBREVIATIONS[abbrev]
    # Keep the sentence-final period the abbreviation swallowed ("... and so on etc. Then" ends a sentence).
    # "e.g. John" is no sentence end, so those keep it only at the very end of the text.
    rest = match.string[match.end():]
    if abbrev in _MID_SENTENCE_ONLY:
        return expansion + ("." if not rest.strip() else "")
    return expansion + ("." if _SENTENCE_FOLLOWS_RE.match(rest) else "")


def _expand_saint_street(match: re.Match[str]) -> str:
    """"St." is Saint before a name unless a capitalised word precedes it ("Baker St. Then ...")."""
    rest = match.string[match.end():]
    before = match.string[: match.start()].split()
    after_name = bool(before) and before[-1][:1].isupper() and before[-1][-1:].isalpha()
    if re.match(r"\s+[A-Z]", rest):
        return "Street." if after_name else "Saint"
    return "Street" + ("." if not rest.strip() else "")


def _filter(text: str, final: bool) -> str:
    """Drop what cannot be spoken.

    The first pass (``final=False``) runs before the expansions so that they see the words that will end up
    next to each other ("No. 😀5" is "number 5"); only symbols with a spoken form ($ % & and dashes) survive
    it beyond what the final pass keeps. The final pass keeps only letters, digits, combining marks on letters,
    spaces and `_KEEP_PUNCTUATION`.
    """
    kept: list[str] = []
    prev = " "  # the last kept character that is not a combining mark
    for ch in text:
        cat = unicodedata.category(ch)
        spoken_symbol = not final and ch in _SPOKEN_SYMBOLS
        if ch.isalnum() or ch in _KEEP_PUNCTUATION or ch == " " or spoken_symbol:
            kept.append(ch)
            prev = ch
        elif cat[0] == "M":
            # Combining marks belong to the letter before them; after anything else (emoji variation
            # selectors, keycaps) they are debris.
            if prev.isalpha():
                kept.append(ch)
        elif ch.isspace() or cat[0] in "PSZ":
            kept.append(" ")  # a removed symbol between words must not glue them together
            prev = " "
        # control, format, private-use and unassigned characters vanish without a trace
    return "".join(kept)


def normalize_text(text: str) -> str:
    """Normalise `text` for phonemisation.

    Examples: ``"Dr. Smith paid $5 — 50% off!"`` -> ``"Doctor Smith paid 5 dollars - 50 percent off!"``;
    ``"“Hi” 😀…"`` -> ``'"Hi"...'``. Returns ``""`` when nothing speakable or prosodic is left.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _FRACTION_RE.sub(" over ", text)
    text = text.translate(_CHAR_MAP)
    # Whitespace of every kind (tabs, newlines, NBSP after NFKC) becomes a plain space.
    text = _WHITESPACE_RE.sub(" ", _filter(text, final=False))
    text = _SPACE_BEFORE_PUNCT_RE.sub("", text)  # "Hi 😀 !" -> "Hi!" rather than "Hi !"
    text = _MINUS_RE.sub("minus ", text)
    text = _RANGE_RE.sub(" to ", text)
    text = _DASH_RE.sub(" - ", text)
    text = _CURRENCY_RE.sub(_expand_currency, text)
    text = _PERCENT_RE.sub(r"\1 percent", text)
    text = _HASH_NUMBER_RE.sub("number ", text)
    text = _NUMBER_ABBREV_RE.sub("number ", text)
    text = _SAINT_STREET_RE.sub(_expand_saint_street, text)
    text = _ABBREV_RE.sub(_expand_abbreviation, text)
    for symbol, words in _SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = _WHITESPACE_RE.sub(" ", _filter(text, final=True)).strip()
    return _SPACE_BEFORE_PUNCT_RE.sub("", text)


def has_speakable(text: str) -> bool:
    """True when `text` contains at least one letter or digit after normalisation."""
    return any(ch.isalnum() for ch in normalize_text(text))
