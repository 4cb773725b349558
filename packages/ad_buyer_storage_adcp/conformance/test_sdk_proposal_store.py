"""The SDK's tests/test_proposal_store.py, its ``store`` fixture replaced by StorageProposalStore."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import test_proposal_store as sdk
from adcp.decisioning import Recipe
from test_proposal_store import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageProposalStore
from conftest import cannot_apply

_IN_MEMORY_CLASS = "tests the SDK's InMemoryProposalStore class itself (its constructor, flag, factory warning)"
_CLOCK = (
    "drives InMemoryProposalStore's eviction with an injected clock; our stores expire by the store's own "
    "clock (TTLs), tested by our test_drafts_expire_after_draft_ttl"
)
cannot_apply(
    "test_sdk_proposal_store",
    {
        "test_in_memory_store_satisfies_protocol": _IN_MEMORY_CLASS,
        "test_in_memory_store_is_not_durable": _IN_MEMORY_CLASS,
        "test_create_dev_proposal_store_warns": _IN_MEMORY_CLASS,
        "test_draft_evicted_after_ttl": _CLOCK,
        "test_committed_evicted_past_grace": _CLOCK,
        "test_refine_iteration_preserves_creation_time": _CLOCK,
        "test_sync_store_satisfies_protocol": "checks the Protocol against the module's own sync stub class",
    },
)


def _decode(payload: Mapping[str, Any]) -> Recipe:
    """The module's Recipe subclass back from its stored form (an adopter's recipe_decoder)."""
    if payload.get("recipe_kind") == "demo":
        return sdk._DemoRecipe.model_validate(dict(payload))
    return Recipe.model_validate(dict(payload))


@pytest.fixture
def store(adapter) -> StorageProposalStore:  # the SDK module's fixture, redefined
    return adapter(StorageProposalStore, recipe_decoder=_decode)
