"""The SDK's public surface as an app meets it: every public method of ``Client`` and
``SyncClient`` raises only SDK errors, whatever state the client or the supernode is in.

Methods are enumerated by introspection, so a new method without a case here fails
``test_every_public_name_has_a_case``. Each case says what the name does in three
situations: called after ``close()`` (``Closed``), against a supernode that is down
(``Unavailable``, or keeps trying for what outlives outages), and, for peer to peer,
before ``enable_peer_to_peer`` (``PeerToPeerNotEnabled``). A raw gRPC error is always a
failure. Both clients share one table: ``SyncClient`` has the same API.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import (
    Backoff,
    Client,
    ClientConfig,
    Closed,
    DeviceStatus,
    Identity,
    PeerToPeerNotEnabled,
    SyncClient,
    Unavailable,
    Visibility,
)
from client_sdk.blocking import BlockingIterator
from client_sdk.p2p.certificates import raw_public_key
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import unique

# Fail fast against a dead supernode: two quick attempts, short close budget.
FAST_FAIL = ClientConfig(
    plaintext=True,
    call_deadline_seconds=1.0,
    max_attempts=2,
    backoff=Backoff(initial_seconds=0.01, maximum_seconds=0.05),
    close_deadline_seconds=0.5,
)
# How long a method that keeps trying (a watch, a listener) is watched not to fail.
KEEPS_TRYING_FOR = 1.0
TRANSPORT_KEY = Ed25519PrivateKey.generate()
TRANSPORT_PUBLIC = raw_public_key(TRANSPORT_KEY.public_key())

Outcome = type[Exception] | None  # the error expected, or None: returns normally
RETURNS: Outcome = None
KEEPS_TRYING: Outcome = TimeoutError  # still waiting (no error) when we stop looking
Call = Callable[[Any], object]


@dataclass(frozen=True)
class Case:
    """How to call one public name, and what it does in each situation."""

    call: Call
    down: Outcome
    closed: Outcome = Closed
    p2p_off: Outcome | None = None  # only peer-to-peer names: before enable_peer_to_peer
    sync_call: Call | None = None  # where the blocking signature differs


def read(name: str) -> Case:
    """A plain attribute or property: readable in every state."""
    return Case(lambda client: getattr(client, name), down=RETURNS, closed=RETURNS)


CASES: dict[str, Case] = {
    "handle": read("handle"),
    "identity": read("identity"),
    "current_target": read("current_target"),
    "routing": read("routing"),
    "config": read("config"),
    "pins": read("pins"),
    "contacts": read("contacts"),
    "create_account": Case(lambda c: c.create_account("Surface"), down=Unavailable),
    "get_account": Case(lambda c: c.get_account(c.handle), down=Unavailable),
    "login": Case(lambda c: c.login(), down=Unavailable),
    "register_device": Case(
        lambda c: c.register_device("spare", transport_key=TRANSPORT_PUBLIC), down=Unavailable
    ),
    "update_device": Case(lambda c: c.update_device("dev", status=DeviceStatus.AWAY), Unavailable),
    "update_status": Case(lambda c: c.update_status("dev", DeviceStatus.BUSY), Unavailable),
    "registration": Case(lambda c: c.registration("dev"), down=RETURNS),
    "unregister_device": Case(lambda c: c.unregister_device("spare"), down=Unavailable),
    "lookup": Case(lambda c: c.lookup(c.handle), down=Unavailable),
    "lookup_many": Case(lambda c: c.lookup_many([c.handle, "nobody"]), down=Unavailable),
    "search": Case(lambda c: c.search("surface"), down=Unavailable),
    "watch": Case(lambda c: c.watch([c.handle]), down=KEEPS_TRYING),  # outlives outages
    "enable_peer_to_peer": Case(
        lambda c: c.enable_peer_to_peer("dev", TRANSPORT_KEY), down=RETURNS
    ),
    "connect": Case(
        lambda c: c.connect(c.handle, "dev"), down=Unavailable, p2p_off=PeerToPeerNotEnabled
    ),
    "incoming": Case(lambda c: c.incoming(), down=KEEPS_TRYING, p2p_off=PeerToPeerNotEnabled),
    "offers": Case(lambda c: c.offers(), down=KEEPS_TRYING, p2p_off=PeerToPeerNotEnabled),
    "get_privacy": Case(lambda c: c.get_privacy(), down=Unavailable),
    "set_privacy": Case(lambda c: c.set_privacy(Visibility.EVERYONE), down=Unavailable),
    "rotate_key": Case(lambda c: c.rotate_key(Identity.generate()), down=Unavailable),
    "wait_listening": Case(
        lambda c: c.wait_listening(),
        down=KEEPS_TRYING,
        p2p_off=PeerToPeerNotEnabled,
        sync_call=lambda c: c.wait_listening(timeout=KEEPS_TRYING_FOR),
    ),
    "listener": Case(lambda c: c.listener, down=RETURNS, p2p_off=PeerToPeerNotEnabled),
    "revoke_sessions": Case(lambda c: c.revoke_sessions(), down=Unavailable),
    # Closes the client: last, with close (which then has nothing left to do). Down, it
    # holds no token any more (the "login" case dropped it), so there is nothing to end.
    "logout": Case(lambda c: c.logout(), down=RETURNS, closed=RETURNS),
    "close": Case(lambda c: c.close(), down=RETURNS, closed=RETURNS),
}
# SyncClient only: the async client underneath.
SYNC_ONLY = {"client": read("client")}


def public_names(client: object) -> set[str]:
    return {name for name in dir(client) if not name.startswith("_")}


def expectations(
    cases: dict[str, Case], situation: Callable[[Case], Outcome | None]
) -> list[tuple[str, Case, Outcome]]:
    """The names a situation applies to, with what each must do; ``close`` last (after
    it, everything is ``Closed``; ``logout`` closes too, so it comes just before).
    ``p2p_off`` applies only to peer-to-peer names."""
    chosen = [
        (name, case, situation(case))
        for name, case in cases.items()
        if situation is not p2p_off or case.p2p_off is not None
    ]
    return sorted(chosen, key=lambda item: item[0] in ("logout", "close"))


def verdict(name: str, expected: Outcome, raised: Exception | None) -> str | None:
    if isinstance(raised, grpc.RpcError):
        return f"{name}: a raw gRPC error escaped: {raised!r}"
    if expected is None:
        return None if raised is None else f"{name}: expected to return, raised {raised!r}"
    if not isinstance(raised, expected):
        return f"{name}: expected {expected.__name__}, got {raised!r}"
    return None


async def settle(result: object) -> object:
    """Await what a ``Client`` call returned; take one item of an iterator."""
    if inspect.isawaitable(result):
        async with asyncio.timeout(KEEPS_TRYING_FOR):
            return await result
    if isinstance(result, AsyncIterator):
        try:
            async with asyncio.timeout(KEEPS_TRYING_FOR):
                return await anext(result)
        finally:
            close = getattr(result, "aclose", None) or getattr(result, "close")  # noqa: B009
            await close()  # an async generator (incoming) or a Watch
    return result


def settle_sync(result: object) -> object:
    if isinstance(result, BlockingIterator):
        try:
            return result.next(timeout=KEEPS_TRYING_FOR)
        finally:
            result.close()
    return result


async def walk(client: Client, situation: Callable[[Case], Outcome | None]) -> list[str]:
    problems: list[str | None] = []
    for name, case, expected in expectations(CASES, situation):
        raised: Exception | None = None
        try:
            await settle(case.call(client))
        except Exception as exc:
            raised = exc
        problems.append(verdict(name, expected, raised))
    return [problem for problem in problems if problem]


def walk_sync(client: SyncClient, situation: Callable[[Case], Outcome | None]) -> list[str]:
    problems: list[str | None] = []
    for name, case, expected in expectations({**CASES, **SYNC_ONLY}, situation):
        raised: Exception | None = None
        try:
            settle_sync((case.sync_call or case.call)(client))
        except Exception as exc:
            raised = exc
        problems.append(verdict(name, expected, raised))
    return [problem for problem in problems if problem]


def closed(case: Case) -> Outcome:
    return case.closed


def down(case: Case) -> Outcome:
    return case.down


def p2p_off(case: Case) -> Outcome | None:
    return case.p2p_off


async def ready_client(target: str) -> Client:
    """An account with a registered, peer-to-peer enabled device ``dev``."""
    client = Client(target, Identity.generate(), unique("surface"), config=FAST_FAIL)
    await client.create_account("Surface")
    await client.register_device("dev", transport_key=TRANSPORT_PUBLIC, ttl=60)
    client.enable_peer_to_peer("dev", TRANSPORT_KEY)
    return client


def ready_sync_client(target: str) -> SyncClient:
    client = SyncClient(target, Identity.generate(), unique("surface"), config=FAST_FAIL)
    client.create_account("Surface")
    client.register_device("dev", transport_key=TRANSPORT_PUBLIC, ttl=60)
    client.enable_peer_to_peer("dev", TRANSPORT_KEY)
    return client


def test_every_public_name_has_a_case() -> None:
    """Introspection, so a method added to either client cannot be forgotten here; and
    the parity of the two clients: SyncClient has every name Client has."""
    async_client = Client("127.0.0.1:1", Identity.generate(), "nobody")
    sync_client = SyncClient("127.0.0.1:1", Identity.generate(), "nobody")
    try:
        assert public_names(async_client) == set(CASES)
        assert public_names(sync_client) == set(CASES) | set(SYNC_ONLY)
    finally:
        sync_client.close()
    assert {name for name, case in CASES.items() if case.p2p_off} >= {
        "connect",
        "incoming",
        "offers",
    }


async def test_client_after_close_raises_closed(supernode: SupernodeProcess) -> None:
    client = await ready_client(supernode.grpc_target)
    await client.close()
    assert await walk(client, closed) == []


async def test_client_against_a_down_supernode_raises_sdk_errors(
    supernode: SupernodeProcess,
) -> None:
    client = await ready_client(supernode.grpc_target)
    supernode.kill()
    try:
        assert await walk(client, down) == []
    finally:
        await client.close()


async def test_client_peer_to_peer_before_enabling_says_so(supernode: SupernodeProcess) -> None:
    client = Client(supernode.grpc_target, Identity.generate(), unique("surface"), config=FAST_FAIL)
    try:
        await client.create_account("Surface")
        assert await walk(client, p2p_off) == []
    finally:
        await client.close()


def test_sync_client_after_close_raises_closed(supernode: SupernodeProcess) -> None:
    client = ready_sync_client(supernode.grpc_target)
    client.close()
    assert walk_sync(client, closed) == []


def test_sync_client_against_a_down_supernode_raises_sdk_errors(
    supernode: SupernodeProcess,
) -> None:
    client = ready_sync_client(supernode.grpc_target)
    supernode.kill()
    try:
        assert walk_sync(client, down) == []
    finally:
        client.close()


def test_sync_client_peer_to_peer_before_enabling_says_so(supernode: SupernodeProcess) -> None:
    with SyncClient(
        supernode.grpc_target, Identity.generate(), unique("surface"), config=FAST_FAIL
    ) as client:
        client.create_account("Surface")
        assert walk_sync(client, p2p_off) == []
