"""Number spelling used by WER normalisation."""
from __future__ import annotations

import pytest

from flexitts.evaluation.wer import normalize_for_wer, word_error_rate
from flexitts.text.numbers import cardinal, ordinal, spell_numbers


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"), (100, "one hundred"),
     (2021, "two thousand twenty one"), (1_000_001, "one million one")],
)
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (12, "twelfth"), (21, "twenty first"), (40, "fortieth"), (100, "one hundredth")])
def test_ordinal(n, words):
    assert ordinal(n) == words


def test_spell_numbers_in_text():
    assert spell_numbers("In 1984, 2,500 people read 3.14 pages on the 2nd day of the 1990s.") == (
        "In nineteen eighty four, two thousand five hundred people read three point one four pages on the "
        "second day of the nineteen nineties."
    )
    assert spell_numbers("R2D2 and B-52") == "R2D2 and B-fifty two"  # digits inside words stay


def test_wer_ignores_number_spelling_and_punctuation():
    assert normalize_for_wer("Hello, World! It's 8 o'clock.") == "hello world it's eight o'clock"
    assert word_error_rate(["It costs 8 dollars."], ["it costs eight dollars"]) == 0.0
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])
