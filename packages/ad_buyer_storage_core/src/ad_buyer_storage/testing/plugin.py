"""pytest plugin (entry point ``pytest11``): registers the kit's markers.

Imports only pytest, so having core installed never slows or breaks an unrelated test run.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a test from the ad-buyer-storage conformance kit")
    config.addinivalue_line("markers", "multiprocess: a conformance test that starts child processes")
