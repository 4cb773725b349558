"""Figures a fault test measured, gathered for RELIABILITY.md.

A test calls :func:`record` with its plan case ("F1") and one line of what it measured. When the
run sets ``ABS_RELIABILITY_REPORT`` to a markdown file and passes, ``conftest.py`` rewrites the
block between the ``figures`` markers of that file with this run's lines.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

FIGURES: dict[str, list[str]] = {}
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def record(case: str, line: str) -> None:
    FIGURES.setdefault(case, []).append(line)


def _case_order(case: str) -> tuple[str, int]:
    match = re.fullmatch(r"([A-Z])(\d+)", case)
    return (match.group(1), int(match.group(2))) if match else (case, 0)


def render() -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, f"Last run: {stamp}.", "", "| Case | Measured |", "|---|---|"]
    for case in sorted(FIGURES, key=_case_order):
        lines += [f"| {case} | {line} |" for line in FIGURES[case]]
    return "\n".join([*lines, END])


def write_into(path: Path) -> None:
    text = path.read_text()
    head, found, rest = text.partition(START)
    if not found:
        raise ValueError(f"{path} has no {START} marker")
    _, found, tail = rest.partition(END)
    if not found:
        raise ValueError(f"{path} has no {END} marker")
    path.write_text(head + render() + tail)
