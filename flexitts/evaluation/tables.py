"""Markdown cells and check tables shared by the evaluation and benchmark reports."""
from __future__ import annotations

import math
from typing import Any, Sequence


def cell(value: Any, digits: int = 3) -> str:
    """One table cell: `-` for a missing or non-finite figure, yes/no for a flag, floats to `digits` places."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def verdict(check: dict[str, Any]) -> str:
    """A report's verdict on one check: PASS, FAIL, or "reported" (`pass` None: a figure with no bar)."""
    return "reported" if check["pass"] is None else ("PASS" if check["pass"] else "FAIL")


def checks_table(checks: Sequence[dict[str, Any]], issue: int, digits: int = 4) -> list[str]:
    """The "## Checks (issue N)" section: one row per check dict (`name`, `value`, `limit`, `pass`)."""
    return (["## Checks (issue %d)" % issue, "", "| check | value | required | result |", "|---|---:|---|---|"]
            + [f"| {k['name']} | {cell(k['value'], digits)} | {k['limit']} | {verdict(k)} |" for k in checks])
