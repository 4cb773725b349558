"""The kit in one class: every area of the generic store (the opt-in ``domain`` area and
:class:`StorageContract`, which adds it, are in :mod:`.domain`)."""

from __future__ import annotations

from .atomic import AtomicContract
from .coordination import CoordinationContract
from .kv import KeyValueContract
from .lifecycle import LifecycleContract
from .listing import ListingContract
from .multiprocess import MultiProcessContract
from .pubsub import PubSubContract
from .transactions import TransactionsContract
from .ttl import TTLContract

__all__ = ["BackendContract"]


class BackendContract(
    LifecycleContract,
    KeyValueContract,
    ListingContract,
    TTLContract,
    AtomicContract,
    TransactionsContract,
    PubSubContract,
    MultiProcessContract,
    CoordinationContract,
):
    """Every area of the generic store, certified on a plain :class:`~ad_buyer_storage.Store`
    over the backend. Subclass it and provide a ``harness`` fixture returning a :class:`Harness`.

    Tests of a capability the backend does not claim are skipped with the reason; tests that
    check its refusal run instead. Subclass one part alone (``KeyValueContract``...) to certify
    only that area.
    """
