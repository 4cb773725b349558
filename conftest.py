"""The repository's pytest configuration, for the root tests and each package's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._support import figures

# Every fixture lives beside the helpers it uses.
pytest_plugins = ["tests._support.fixtures"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a passing run with ABS_RELIABILITY_REPORT set, write this run's figures into that file."""
    report = os.environ.get("ABS_RELIABILITY_REPORT")
    if report and exitstatus == 0 and figures.FIGURES:
        figures.write_into(Path(report))
