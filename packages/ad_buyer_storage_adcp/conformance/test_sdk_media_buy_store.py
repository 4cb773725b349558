"""The SDK's tests/test_media_buy_store.py with StorageMediaBuyContextStore as the context store
``create_media_buy_store`` builds by default (the module passes none: it takes the default)."""

from __future__ import annotations

import adcp.decisioning.media_buy_store as media_buy_store
import pytest
from test_media_buy_store import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageMediaBuyContextStore


@pytest.fixture(autouse=True)
def _our_default_context_store(adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_buy_store, "InMemoryMediaBuyContextStore", lambda: adapter(StorageMediaBuyContextStore))
