"""Spelling out numbers in words ("21" -> "twenty one", "2nd" -> "second"), for comparing transcripts:
recognisers write numbers either way, and WER must not count "8" against "eight"."""
from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                    "nine": "ninth", "twelve": "twelfth"}
_NUMBER_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th|s)?(?!\w)", re.IGNORECASE)


def cardinal(n: int) -> str:
    """Words of a non-negative integer: 1905 -> "one thousand nine hundred five"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """Ordinal words: 2 -> "second", 21 -> "twenty first", 40 -> "fortieth"."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_ENDINGS:
        words[-1] = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def spell_numbers(text: str) -> str:
    """Replace every number in `text` by words; years read as years ("1984" -> "nineteen eighty four")."""

    def words(match: re.Match[str]) -> str:
        digits, fraction, suffix = match.group(1).replace(",", ""), match.group(2), (match.group(3) or "").lower()
        value = int(digits)
        if suffix in ("st", "nd", "rd", "th"):
            return ordinal(value)
        if fraction is None and len(digits) == 4 and 1100 <= value <= 1999 and "," not in match.group(1):
            spoken = f"{cardinal(value // 100)} {cardinal(value % 100) if value % 100 >= 10 else 'oh ' + cardinal(value % 100) if value % 100 else 'hundred'}"
        else:
            spoken = cardinal(value)
        if fraction is not None:
            spoken += " point " + " ".join(_ONES[int(d)] for d in fraction)
        if suffix == "s":  # "1990s" -> "nineteen nineties"
            spoken = spoken[:-1] + "ies" if spoken.endswith("y") else spoken + "s"
        return spoken

    return _NUMBER_RE.sub(words, text)
