"""Lifecycle: the backend implements the protocol, connects and closes once, answers ping and
info; and, if it claims DURABLE, what it stored survives closing it and opening it again."""

from __future__ import annotations

from ad_buyer_storage.contract.protocol import Capability, StorageBackend, SupportsParts, unimplemented
from ad_buyer_storage.errors import NotConnectedError, StorageClosedError

from ._base import ContractBase, certifies, fails_with
from .harness import Subject

__all__ = ["LifecycleContract"]


class LifecycleContract(ContractBase):
    """The lifecycle rules (area ``lifecycle``) and the DURABLE claim (area ``durable``)."""

    @certifies("lifecycle")
    async def test_backend_implements_the_protocol(self, subject: Subject) -> None:
        backend = subject.storage.backend
        assert isinstance(backend, StorageBackend), (
            f"{type(backend).__name__} must implement every member of StorageBackend (name, capabilities, connect, "
            "aclose, ping, info, read, write, remove, count, scan)"
        )
        assert isinstance(backend.name, str), f"a backend's name must be a str, not {backend.name!r}"
        assert backend.name, "a backend's name must not be empty"
        unknown = [c for c in backend.capabilities if not isinstance(c, Capability)]
        assert not unknown, f"capabilities must be Capability members only, not {unknown!r}"
        pending = [backend]
        while pending:  # the backend, and every backend it is made of
            checked = pending.pop()
            missing = unimplemented(checked)
            assert not missing, f"{type(checked).__name__} claims flags without their methods: " + "; ".join(
                f"{flag.value.upper()} needs {', '.join(methods)}" for flag, methods in missing.items()
            )
            if isinstance(checked, SupportsParts):
                pending.extend(part for _, part in checked.parts())

    @certifies("lifecycle")
    async def test_lifecycle(self, subject: Subject) -> None:
        fresh = subject.reopen()
        await fails_with(
            NotConnectedError, fresh.get("k"), "a storage used before connect() must raise NotConnectedError"
        )
        async with fresh as entered:
            assert entered is fresh, "`async with storage as s` must give the storage itself"
            await fresh.set("k", 1)
            again = await fresh.connect()
            assert again is fresh, "connecting an open storage again must be a no-op that returns it"
        await fails_with(
            StorageClosedError, fresh.get("k"), "a storage used after aclose() must raise StorageClosedError"
        )
        await fresh.aclose()  # closing again is a no-op
        await fresh.disconnect()
        await fails_with(StorageClosedError, fresh.connect(), "a closed storage must refuse to connect again")

    @certifies("lifecycle")
    async def test_ping_and_info(self, subject: Subject) -> None:
        latency = await subject.storage.ping()
        assert latency >= 0, f"ping() must return a round-trip time >= 0 seconds, not {latency!r}"
        info = await subject.storage.info()
        assert info["backend"] == subject.storage.name, (
            f"info()['backend'] must be the backend's name {subject.storage.name!r}, not {info['backend']!r}"
        )
        claimed = info["capabilities"]
        assert isinstance(claimed, list), f"info()['capabilities'] must be a list, not {claimed!r}"
        expected = {c.value for c in subject.storage.capabilities}
        assert set(claimed) == expected, f"info()['capabilities'] must be the claimed {sorted(expected)}, not {claimed}"

    @certifies("durable", Capability.DURABLE)
    async def test_durable_data_survives_reopen(self, subject: Subject) -> None:
        await subject.storage.set("deal:durable", {"spend": "10.50"})
        async with subject.reopen() as again:
            got = await again.get("deal:durable")
            assert got == {"spend": "10.50"}, (
                f"DURABLE: a value written must be read by a backend opened again on the same store (got {got!r})"
            )
