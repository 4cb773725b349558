"""The SDK's :class:`~adcp.decisioning.ProposalStore` on one of our stores.

Layout, under ``<namespace>:proposal:``: ``p:<account>:<proposal>`` holds the record,
``m:<account>:<media buy>`` the reverse index (the proposal id). Every transition is one
transaction (read, check the state, write): of two concurrent ``try_reserve_consumption`` calls,
in any processes, exactly one wins and the other gets ``PROPOSAL_NOT_COMMITTED``.

Expiry as the SDK's in-memory store: a draft lives ``draft_ttl`` from its first ``put_draft``
(refinements keep that deadline), a committed or consumed proposal until ``committed_grace``
after its ``expires_at``; the store's TTLs remove them (and the index entry with them).
Recipes are stored as ``model_dump(mode="json")`` and rebuilt by *recipe_decoder* (default:
the base :class:`~adcp.decisioning.Recipe`; adopters with Recipe subclasses pass their own).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from adcp.decisioning import AdcpError, ProposalRecord, ProposalState, Recipe

from ad_buyer_storage import InvalidInputError, Store, Transaction
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageProposalStore"]

T = TypeVar("T")
_MIN_TTL = 0.001


def _default_decoder(payload: Mapping[str, Any]) -> Recipe:
    if "recipe_kind" in payload:
        raise AdcpError(
            "INTERNAL_ERROR",
            message=(
                f"StorageProposalStore: a stored recipe has recipe_kind={payload['recipe_kind']!r} but no "
                "recipe_decoder= was given; pass one that builds your Recipe subclass"
            ),
            recovery="terminal",
        )
    return Recipe.model_validate(dict(payload))


def _encode_recipes(recipes: Mapping[str, Any]) -> str:
    out: dict[str, Any] = {}
    for product_id, recipe in recipes.items():
        if isinstance(recipe, Recipe):
            out[str(product_id)] = recipe.model_dump(mode="json")
        elif isinstance(recipe, Mapping):
            out[str(product_id)] = dict(recipe)
        else:
            raise AdcpError(
                "INTERNAL_ERROR",
                message=f"recipes[{product_id!r}] must be a Recipe or a mapping, not {type(recipe).__name__}",
                recovery="terminal",
            )
    return json.dumps(out, separators=(",", ":"))


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), allow_nan=False)


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise AdcpError("INTERNAL_ERROR", message="expires_at must be a timezone-aware datetime", recovery="terminal")
    return value


def _internal(message: str) -> AdcpError:
    return AdcpError("INTERNAL_ERROR", message=message, recovery="terminal")


class StorageProposalStore:
    """Proposals shared by every process on the store (``is_durable``: the store's)."""

    is_durable: bool = False  # the class's answer; each object answers for its own store

    def __init__(
        self,
        target: Target = None,
        *,
        recipe_decoder: Callable[[Mapping[str, Any]], Recipe] = _default_decoder,
        draft_ttl: timedelta = timedelta(hours=24),
        committed_grace: timedelta = timedelta(days=7),
        namespace: str = "adcp",
        **overrides: Any,
    ) -> None:
        if draft_ttl <= timedelta(0) or committed_grace < timedelta(0):
            raise InvalidInputError("draft_ttl must be positive and committed_grace not negative")
        self._holder = StoreHolder(target, namespace=namespace, kind="proposal", **overrides)
        self._decoder = recipe_decoder
        self._draft_ttl = draft_ttl.total_seconds()
        self._grace = committed_grace
        self.is_durable = self._holder.durable

    def __repr__(self) -> str:
        return f"<StorageProposalStore {self._holder.raw_store!r}>"

    @property
    def store(self) -> Store:
        return self._holder.raw_store

    async def aclose(self) -> None:
        await self._holder.aclose()

    async def __aenter__(self) -> StorageProposalStore:
        await self._holder.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- records -----------------------------------------------------------------------------------
    def _key(self, account_id: str, proposal_id: str) -> str:
        return self._holder.key("p", account_id, proposal_id)

    def _index_key(self, account_id: str, media_buy_id: str) -> str:
        return self._holder.key("m", account_id, media_buy_id)

    def _record(self, value: dict[str, Any]) -> ProposalRecord:
        recipes = {pid: self._decoder(payload) for pid, payload in json.loads(value["r"]).items()}
        return ProposalRecord(
            proposal_id=value["p"],
            account_id=value["a"],
            state=ProposalState(value["s"]),
            recipes=recipes,
            proposal_payload=json.loads(value["pl"]),
            expires_at=None if value["x"] is None else datetime.fromisoformat(value["x"]),
            media_buy_id=value["m"],
            recipe_schema_version=value["v"],
        )

    def _committed_ttl(self, expires_at_iso: str) -> float:
        deadline = datetime.fromisoformat(expires_at_iso) + self._grace
        return max((deadline - datetime.now(UTC)).total_seconds(), _MIN_TTL)

    async def _transact(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        store = await self._holder.store()
        return await store.transact(fn, attempts=50)

    # -- the ProposalStore protocol ---------------------------------------------------------------------
    async def put_draft(
        self, *, proposal_id: str, account_id: str, recipes: Mapping[str, Any], proposal_payload: Mapping[str, Any]
    ) -> None:
        key = self._key(account_id, proposal_id)
        recipes_text, payload_text = _encode_recipes(recipes), _json(proposal_payload)

        async def fn(tx: Transaction) -> None:
            existing = await tx.get(key)
            if existing is not None and existing["s"] != ProposalState.DRAFT.value:
                raise _internal(
                    f"Cannot put_draft on proposal {proposal_id!r} in state {existing['s']!r}; refine iterations "
                    "are only valid on draft proposals."
                )
            value = {
                "p": proposal_id, "a": account_id, "s": ProposalState.DRAFT.value, "r": recipes_text,
                "pl": payload_text, "x": None, "m": None, "v": 1,
            }  # fmt: skip
            if existing is None:
                tx.set(key, value, ttl=self._draft_ttl)
            else:
                tx.set(key, value, keep_ttl=True)  # the draft's deadline runs from its first version

        await self._transact(fn)

    async def get(self, proposal_id: str, *, expected_account_id: str) -> ProposalRecord | None:
        store = await self._holder.store()
        value = await store.get(self._key(expected_account_id, proposal_id))
        return None if value is None else self._record(value)

    async def commit(
        self,
        proposal_id: str,
        *,
        expires_at: datetime,
        proposal_payload: Mapping[str, Any],
        expected_account_id: str,
    ) -> None:
        key = self._key(expected_account_id, proposal_id)
        expires_iso = _utc(expires_at).isoformat()
        payload_text = _json(proposal_payload)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                raise _internal(f"Cannot commit proposal {proposal_id!r}: not in store for the expected tenant.")
            if value["s"] == ProposalState.COMMITTED.value:
                same_deadline = datetime.fromisoformat(value["x"]) == expires_at
                if same_deadline and json.loads(value["pl"]) == json.loads(payload_text):
                    return
                raise _internal(f"Proposal {proposal_id!r} already committed with a different expires_at or payload.")
            if value["s"] != ProposalState.DRAFT.value:
                raise _internal(
                    f"Cannot commit proposal {proposal_id!r} from state {value['s']!r}; commit requires DRAFT."
                )
            tx.set(
                key,
                {**value, "s": ProposalState.COMMITTED.value, "x": expires_iso, "pl": payload_text},
                ttl=self._committed_ttl(expires_iso),
            )

        await self._transact(fn)

    async def try_reserve_consumption(self, proposal_id: str, *, expected_account_id: str) -> ProposalRecord:
        key = self._key(expected_account_id, proposal_id)

        async def fn(tx: Transaction) -> dict[str, Any]:
            value = await tx.get(key)
            if value is None:
                raise AdcpError(
                    "PROPOSAL_NOT_FOUND", message=f"Proposal {proposal_id!r} not found.", recovery="correctable",
                    field="proposal_id",
                )  # fmt: skip
            if value["s"] != ProposalState.COMMITTED.value:
                raise AdcpError(
                    "PROPOSAL_NOT_COMMITTED",
                    message=(
                        f"Proposal {proposal_id!r} is in state {value['s']!r}; create_media_buy requires a committed "
                        "proposal that hasn't been accepted or reserved by another request."
                    ),
                    recovery="correctable",
                    field="proposal_id",
                )
            reserved = {**value, "s": ProposalState.CONSUMING.value}
            tx.set(key, reserved, keep_ttl=True)
            return reserved

        return self._record(await self._transact(fn))

    async def finalize_consumption(self, proposal_id: str, *, media_buy_id: str, expected_account_id: str) -> None:
        await self._consume(
            proposal_id, media_buy_id, expected_account_id, ProposalState.CONSUMING, "finalize_consumption"
        )

    async def mark_consumed(self, proposal_id: str, *, media_buy_id: str, expected_account_id: str) -> None:
        await self._consume(proposal_id, media_buy_id, expected_account_id, ProposalState.COMMITTED, "mark_consumed")

    async def _consume(
        self, proposal_id: str, media_buy_id: str, account_id: str, required: ProposalState, what: str
    ) -> None:
        key, index = self._key(account_id, proposal_id), self._index_key(account_id, media_buy_id)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                raise _internal(f"{what}: proposal {proposal_id!r} not found for the expected tenant.")
            if value["s"] == ProposalState.CONSUMED.value:
                if value["m"] == media_buy_id:
                    return
                raise _internal(
                    f"Proposal {proposal_id!r} already consumed by media_buy_id={value['m']!r}; "
                    f"cannot re-consume as {media_buy_id!r}."
                )
            if value["s"] != required.value:
                raise _internal(
                    f"{what} requires {required.value.upper()}; proposal {proposal_id!r} is in {value['s']!r}."
                )
            ttl = self._committed_ttl(value["x"])
            tx.set(key, {**value, "s": ProposalState.CONSUMED.value, "m": media_buy_id}, keep_ttl=True)
            tx.set(index, proposal_id, ttl=ttl)

        await self._transact(fn)

    async def release_consumption(self, proposal_id: str, *, expected_account_id: str) -> None:
        key = self._key(expected_account_id, proposal_id)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None or value["s"] == ProposalState.COMMITTED.value:
                return
            if value["s"] != ProposalState.CONSUMING.value:
                raise _internal(
                    f"release_consumption requires CONSUMING; proposal {proposal_id!r} is in {value['s']!r}."
                )
            tx.set(key, {**value, "s": ProposalState.COMMITTED.value}, keep_ttl=True)

        await self._transact(fn)

    async def discard(self, proposal_id: str, *, expected_account_id: str) -> None:
        key = self._key(expected_account_id, proposal_id)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                return
            tx.delete(key)
            if value["m"] is not None:
                index = self._index_key(expected_account_id, value["m"])
                if await tx.get(index) == proposal_id:
                    tx.delete(index)

        await self._transact(fn)

    async def get_by_media_buy_id(self, media_buy_id: str, *, expected_account_id: str) -> ProposalRecord | None:
        store = await self._holder.store()
        proposal_id = await store.get(self._index_key(expected_account_id, media_buy_id))
        if proposal_id is None:
            return None
        value = await store.get(self._key(expected_account_id, proposal_id))
        if value is None or value["m"] != media_buy_id:
            return None
        return self._record(value)
