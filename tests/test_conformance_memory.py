"""The conformance kit against the in-memory reference backend."""

import pytest

from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.testing import Harness, StorageContract


class TestMemoryContract(StorageContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return Harness(lambda clock: MemoryBackend(clock=clock), storage_options={"max_value_bytes": 64 * 1024})
