"""StorageReplayStore: the SDK's verifier with it, and the AtomicReplayStore rules, on every backend."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from adcp.signing import (
    AtomicReplayStore,
    SignatureVerificationError,
    VerifierCapability,
    VerifyOptions,
    generate_signing_keypair,
    load_private_key_pem,
    sign_request,
    verify_request_signature,
)

from ad_buyer_storage import LifecycleError, StorageClosedError, build_store
from ad_buyer_storage_adcp import StorageReplayStore

KID = "buyer-key-1"
PEM, PUBLIC_JWK = generate_signing_keypair(kid=KID)
PRIVATE_KEY = load_private_key_pem(PEM)


def _target(backend: Any) -> str:
    """A replay store connects its own store: memory by name (a fresh one), others by URL."""
    return str(backend.url)


def _signed_request() -> tuple[bytes, dict[str, str]]:
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}).encode()
    base = {"content-type": "application/json"}
    signed = sign_request(
        method="POST", url="https://seller.example/mcp", headers=base, body=raw, private_key=PRIVATE_KEY,
        key_id=KID, alg="ed25519", cover_content_digest=True, signing_profile_version="3.1",
    )  # fmt: skip
    return raw, {**base, **signed.as_dict()}


def _verify(store: StorageReplayStore, raw: bytes, headers: dict[str, str]) -> None:
    options = VerifyOptions(
        now=time.time(),
        capability=VerifierCapability(),
        operation="get_products",
        jwks_resolver=lambda keyid: PUBLIC_JWK if keyid == KID else None,
        replay_store=store,
    )
    verify_request_signature(
        method="POST", url="https://seller.example/mcp", headers=headers, body=raw, options=options
    )


def test_the_sdk_verifier_refuses_a_replayed_signature(backend) -> None:
    with StorageReplayStore(_target(backend)) as store:
        assert isinstance(store, AtomicReplayStore)
        raw, headers = _signed_request()
        _verify(store, raw, headers)
        with pytest.raises(SignatureVerificationError) as caught:
            _verify(store, raw, headers)
        assert caught.value.code == "request_signature_replayed"
        if backend.multi_process:  # another verifier (another process) on the same store
            with StorageReplayStore(_target(backend)) as other, pytest.raises(SignatureVerificationError):
                _verify(other, raw, headers)


async def test_called_from_a_running_loop_thread(backend) -> None:
    """verify_starlette_request calls the store on the event loop's own thread."""
    with StorageReplayStore(_target(backend)) as store:
        raw, headers = _signed_request()
        _verify(store, raw, headers)
        assert store.claim(KID, "n-1", 60) == "claimed"


def test_one_claim_wins_among_threads(backend) -> None:
    with StorageReplayStore(_target(backend)) as one, StorageReplayStore(_target(backend)) as two:
        stores = [one, two] if backend.multi_process else [one, one]
        barrier = threading.Barrier(8)

        def claim(i: int) -> str:
            barrier.wait()
            return stores[i % 2].claim("kid\x01:*", "nonce\n[x]", 60)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(claim, range(8)))
        assert sorted(results) == ["claimed"] + ["replayed"] * 7


def test_cap_refuses_and_never_evicts(backend) -> None:
    with StorageReplayStore(_target(backend), per_keyid_cap=3) as store:
        assert [store.claim("k", f"n{i}", 1) for i in range(3)] == ["claimed"] * 3
        assert store.at_capacity("k")
        assert store.claim("k", "n3", 60) == "capacity"
        assert store.remember("k", "n3", 60) is False
        assert not store.seen("k", "n3")
        # the earlier nonces are still refused as replays: nothing was evicted
        assert [store.claim("k", f"n{i}", 60) for i in range(3)] == ["replayed"] * 3
        # another key id has its own cap
        assert store.claim("other", "n0", 60) == "claimed"
        time.sleep(2.1)  # the window (rounded up to the second) has passed
        assert not store.at_capacity("k")
        assert store.live_count("k") == 0
        assert store.claim("k", "n3", 60) == "claimed"
        assert store.claim("k", "n0", 60) == "claimed"  # expired: a fresh claim


def test_remember_and_seen(backend) -> None:
    with StorageReplayStore(_target(backend), per_keyid_cap=2) as store:
        assert not store.seen("k", "a")
        assert store.remember("k", "a", 1)
        assert store.seen("k", "a")
        assert store.remember("k", "a", 60)  # extended, still one nonce
        assert store.live_count("k") == 1
        time.sleep(1.2)
        assert store.seen("k", "a")  # the later expiry holds
        assert store.remember("k", "b", 60)
        assert store.at_capacity("k")
        assert store.clear() == 3  # two nonces and the key id's count
        assert not store.seen("k", "a")
        assert not store.at_capacity("k")


def test_lifecycle(backend, tmp_path) -> None:
    opened = build_store("memory")

    async def connect() -> None:
        await opened.connect()

    asyncio.run(connect())
    with pytest.raises(LifecycleError):
        StorageReplayStore(opened)
    store = StorageReplayStore(_target(backend))
    store.close()
    store.close()
    with pytest.raises(StorageClosedError):
        store.claim("k", "n", 1)
