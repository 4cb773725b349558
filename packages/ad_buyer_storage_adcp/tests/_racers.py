"""Child processes racing on one store, for test_processes.py: run as a script with a JSON
config ({"backends": [{"name", "target", "env"}], "out": path}); it imports the SDK once, then,
per backend, forks 4 racers per scenario (os.fork from this single-threaded process, so the
import is paid once) and writes what each racer saw to "out" as JSON.

Scenarios: "idempotency" (4 callers, one key, through the SDK's IdempotencyStore), "nonce" (4
verifiers, one signed request, through the SDK's verify_request_signature), "proposal" (4
try_reserve_consumption of one committed proposal), "killed" (a holder killed -9 mid-hold, then
3 callers of the same key).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from adcp.decisioning import AdcpError
from adcp.server.idempotency import IdempotencyStore
from adcp.signing import (
    SignatureVerificationError,
    VerifierCapability,
    VerifyOptions,
    generate_signing_keypair,
    load_private_key_pem,
    sign_request,
    verify_request_signature,
)

from ad_buyer_storage import build_store
from ad_buyer_storage_adcp import StorageIdempotencyBackend, StorageProposalStore, StorageReplayStore

RACERS = 4
LEASE = 2.0


class Ctx:
    caller_identity = "principal-a"
    tenant_id = None


def fork(fn: Any, *args: Any) -> tuple[int, int]:
    """Run fn(*args) in a child; return its pid and the read end of the pipe its JSON answer arrives on."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            answer = fn(*args)
        except BaseException as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(answer).encode())
        os.close(write)
        os._exit(0)
    os.close(write)
    return pid, read


def collect(children: list[tuple[int, int]]) -> list[Any]:
    answers = []
    for pid, read in children:
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        answers.append(json.loads(b"".join(chunks) or b'{"error": "no answer"}'))
    return answers


def wait_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


# -- idempotency -----------------------------------------------------------------------------------------
def idempotent_call(target: str, ns: str, key: str, start: float, lease: float = LEASE) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with StorageIdempotencyBackend(target, namespace=ns, lease_seconds=lease) as idem:
            counter = build_store(target)
            async with counter:

                async def create_media_buy(self: Any, params: Any, context: Any) -> dict[str, Any]:
                    began = time.time()
                    n = await counter.incr(f"{ns}:executions")
                    await asyncio.sleep(0.3)
                    return {"media_buy_id": f"mb-{os.getpid()}-{n}", "began": began, "ended": time.time()}

                wrapped = IdempotencyStore(idem, ttl_seconds=3600).wrap(create_media_buy)
                wait_until(start)
                asked = time.time()
                result = await wrapped(None, {"idempotency_key": key, "budget": 100}, Ctx())
                return {"result": result, "asked": asked, "answered": time.time()}

    return asyncio.run(main())


def executions(target: str, ns: str) -> int:
    async def main() -> int:
        async with build_store(target) as store:
            return int(await store.get(f"{ns}:executions", 0))

    return asyncio.run(main())


def race_idempotency(target: str) -> dict[str, Any]:
    ns, start = f"t{uuid.uuid4().hex[:12]}", time.time() + 1.0
    answers = collect([fork(idempotent_call, target, ns, "same-key", start) for _ in range(RACERS)])
    return {"answers": answers, "executions": collect([fork(executions, target, ns)])[0]}


def holder(target: str, ns: str, key: str, ready: int) -> None:
    async def main() -> None:
        async with (
            StorageIdempotencyBackend(target, namespace=ns, lease_seconds=LEASE) as idem,
            idem.hold("principal-a", key),  # the scope IdempotencyStore builds for Ctx
        ):
            os.write(ready, b"held")
            await asyncio.sleep(3600)  # killed -9 here

    asyncio.run(main())


def race_killed(target: str) -> dict[str, Any]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        holder(target, ns, "killed-key", write)
        os._exit(0)
    os.close(write)
    assert os.read(read, 4) == b"held"
    held_at = time.time()
    os.close(read)
    start = time.time() + 1.0
    callers = [fork(idempotent_call, target, ns, "killed-key", start) for _ in range(RACERS - 1)]
    wait_until(start - 0.2)
    os.kill(pid, signal.SIGKILL)  # mid-hold: its lease stays until it lapses
    killed_at = time.time()
    os.waitpid(pid, 0)
    answers = collect(callers)
    found = collect([fork(executions, target, ns)])[0]
    return {"answers": answers, "executions": found, "held_at": held_at, "killed_at": killed_at}


# -- replay nonces ---------------------------------------------------------------------------------------
def verify(target: str, ns: str, raw: bytes, headers: dict[str, str], jwk: dict[str, Any], start: float) -> str:
    with StorageReplayStore(target, namespace=ns) as store:
        options = VerifyOptions(
            now=time.time(), capability=VerifierCapability(), operation="get_products",
            jwks_resolver=lambda keyid: jwk if keyid == "k1" else None, replay_store=store,
        )  # fmt: skip
        store.seen("k1", "warm-up")  # connected before the race starts
        wait_until(start)
        try:
            url = "https://seller.example/mcp"
            verify_request_signature(method="POST", url=url, headers=headers, body=raw, options=options)
            return "verified"
        except SignatureVerificationError as exc:
            return exc.code


def race_nonce(target: str) -> dict[str, Any]:
    pem, jwk = generate_signing_keypair(kid="k1")
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}'
    base = {"content-type": "application/json"}
    signed = sign_request(
        method="POST", url="https://seller.example/mcp", headers=base, body=raw, private_key=load_private_key_pem(pem),
        key_id="k1", alg="ed25519", cover_content_digest=True, signing_profile_version="3.1",
    )  # fmt: skip
    headers = {**base, **signed.as_dict()}
    ns, start = f"t{uuid.uuid4().hex[:12]}", time.time() + 1.0
    return {"answers": collect([fork(verify, target, ns, raw, headers, jwk, start) for _ in range(RACERS)])}


# -- proposals -------------------------------------------------------------------------------------------
def reserve(target: str, ns: str, start: float) -> str:
    async def main() -> str:
        async with StorageProposalStore(target, namespace=ns) as store:
            await store.get("p1", expected_account_id="acct")  # connected before the race starts
            wait_until(start)
            try:
                await store.try_reserve_consumption("p1", expected_account_id="acct")
                return "reserved"
            except AdcpError as exc:
                return exc.code

    return asyncio.run(main())


def commit_proposal(target: str, ns: str) -> str:
    async def main() -> str:
        async with StorageProposalStore(target, namespace=ns) as store:
            await store.put_draft(proposal_id="p1", account_id="acct", recipes={}, proposal_payload={})
            expires = datetime(2099, 1, 1, tzinfo=UTC)
            await store.commit("p1", expires_at=expires, proposal_payload={}, expected_account_id="acct")
            return "committed"

    return asyncio.run(main())


def race_proposal(target: str) -> dict[str, Any]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    assert collect([fork(commit_proposal, target, ns)]) == ["committed"]
    start = time.time() + 1.0
    return {"answers": collect([fork(reserve, target, ns, start) for _ in range(RACERS)])}


SCENARIOS = {"idempotency": race_idempotency, "nonce": race_nonce, "proposal": race_proposal, "killed": race_killed}


def main() -> None:
    config = json.loads(open(sys.argv[1], encoding="utf-8").read())  # noqa: SIM115 - one read
    results: dict[str, Any] = {}
    for backend in config["backends"]:
        os.environ.update(backend["env"])
        for scenario, run in SCENARIOS.items():
            results[f"{backend['name']}/{scenario}"] = run(backend["target"])
    with open(config["out"], "w", encoding="utf-8") as out:
        json.dump(results, out)


if __name__ == "__main__":
    main()
