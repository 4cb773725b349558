"""A stranger's backend, certified by the kit in a few lines (this is the README's example)."""

import pytest

from ad_buyer_storage.plugins.registry import registry
from ad_buyer_storage.testing import Harness, StorageContract


class TestDictStoreContract(StorageContract):
    @pytest.fixture
    def harness(self):
        factory = registry.get("dictstore").load_factory()  # found through its entry point
        return Harness(lambda clock: factory(None, clock=clock))
