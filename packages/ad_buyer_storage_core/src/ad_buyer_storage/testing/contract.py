"""The whole kit in one class: every area, as the backends of this repository run it."""

from __future__ import annotations

from .atomic import AtomicContract
from .coordination import CoordinationContract
from .domain import DomainContract
from .kv import KeyValueContract
from .lifecycle import LifecycleContract
from .listing import ListingContract
from .multiprocess import MultiProcessContract
from .pubsub import PubSubContract
from .transactions import TransactionsContract
from .ttl import TTLContract

__all__ = ["StorageContract"]


class StorageContract(
    LifecycleContract,
    KeyValueContract,
    ListingContract,
    TTLContract,
    AtomicContract,
    TransactionsContract,
    PubSubContract,
    MultiProcessContract,
    DomainContract,
    CoordinationContract,
):
    """Every part of the kit. Subclass it and provide a ``harness`` fixture returning a :class:`Harness`.

    Tests of a capability the backend does not claim are skipped with the reason; tests that
    check its refusal run instead. Subclass one part alone (``KeyValueContract``...) to certify
    only that area.
    """
