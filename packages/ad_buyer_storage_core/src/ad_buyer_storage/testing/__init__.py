"""The conformance kit: every rule of the storage contract as a test.

A backend's own conformance file is about ten lines::

    import pytest
    from ad_buyer_storage.testing import Harness, StorageContract
    from my_backend import MyBackend

    class TestMyBackendContract(StorageContract):
        @pytest.fixture
        def harness(self, tmp_path):
            return Harness(lambda clock: MyBackend(tmp_path / "db", clock=clock))

Needs the ``testing`` extra (pytest, pytest-asyncio).
"""

from __future__ import annotations

from ._child import increment_in_processes
from .contract import StorageContract
from .harness import Harness, Subject

__all__ = ["Harness", "StorageContract", "Subject", "increment_in_processes"]
