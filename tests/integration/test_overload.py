"""Load shedding on a real node: a refused call carries the retry trailer and says when to
come back; the SDK waits for it and gets through; health checks are never refused.

A pending Connect (it waits for the callee's answer) holds a slot of its class for as long
as the test likes, which makes "the bound is full" a state rather than a race.
"""

import asyncio
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_sdk import Client, Identity
from client_sdk.protocol.pushback import PUSHBACK_METADATA_KEY, pushback_ms
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG
from tests.integration.test_rendezvous_server import FAST, Peer, expect, pair
from tests.integration.waiting import eventually

SHED_METRIC = "supernode_requests_shed_total"


async def offer_pending(
    alice: Peer, bob: Peer, listening: grpc.aio.UnaryStreamCall
) -> tuple[asyncio.Task[object], str]:
    """Alice's Connect to Bob, in flight until Bob answers (his listener has the offer),
    and the offer's id."""
    connecting: asyncio.Task[object] = asyncio.create_task(alice.connect(bob))
    signal = await listening.read()
    assert signal.HasField("offer")
    return connecting, signal.offer.offer_id


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_refused_call_carries_the_pushback_trailer_and_a_clear_message(
    start_supernode: Callable[..., SupernodeProcess], workers: int
) -> None:
    node = start_supernode(
        *FAST, "--workers", str(workers), "--overload-max-in-flight-signaling", "1"
    )
    alice, bob, listening = await pair(node)
    connecting, _ = await offer_pending(alice, bob, listening)

    # With workers, the Connect may reach a worker: it forwards to the primary, which does
    # the work and sheds, and the trailer comes back through the worker unchanged.
    refused = await expect(alice.connect(bob), grpc.StatusCode.RESOURCE_EXHAUSTED)
    details = refused.details() or ""
    assert "overloaded: 1 signaling calls in progress; retry in" in details
    assert "grpc-retry-pushback-ms" in details
    hint = pushback_ms(refused.trailing_metadata())
    assert hint is not None and 100 <= hint <= 10_000
    assert f"retry in {hint / 1000:.1f} s" in details
    assert node.total(SHED_METRIC, method="Connect") == 1
    assert node.total("supernode_in_flight", call_class="signaling") == 1

    connecting.cancel()
    listening.cancel()
    for peer in (alice, bob):
        await peer.conn.close()


async def test_calls_without_the_trailer_are_limits_not_overload(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """A watch limit is an answer: RESOURCE_EXHAUSTED without any retry trailer."""
    node = start_supernode("--limits-max-watches-per-session", "1")
    conn = DirectoryConnection(node.grpc_target)
    await new_user(conn, "carol")
    first = conn.watch(["carol"], "", 0)
    assert (await first.read()).HasField("snapshot")
    second = conn.watch(["carol"], "", 0)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in second:
            pass
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 1" in (refused.value.details() or "")
    assert all(key != PUSHBACK_METADATA_KEY for key, _ in refused.value.trailing_metadata() or ())
    assert node.total(SHED_METRIC, method="Watch") == 0
    first.cancel()
    await conn.close()


async def test_health_is_answered_and_the_sdk_gets_through_once_load_falls(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """Every public call is refused while one Connect fills the node-wide bound; health
    checks and the callee's Answer (it completes work in flight) are not gated; an SDK
    client waits as told and is served once the slot frees."""
    node = start_supernode(*FAST, "--overload-max-in-flight", "1")
    alice, bob, listening = await pair(node)
    connecting, offer_id = await offer_pending(alice, bob, listening)

    # A write: with --workers the primary answers it (a worker may answer a lookup itself,
    # and a worker's own bound is not the primary's).
    await expect(
        alice.conn.unregister_device("phone", deadline=5),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1 calls in progress",
    )
    health = health_pb2_grpc.HealthStub(alice.conn.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING

    client = Client(node.grpc_target, Identity.generate(), "erin", config=TEST_CONFIG)
    creating = asyncio.create_task(client.create_account())

    async def erin_was_shed() -> bool:
        return node.total(SHED_METRIC, method="CreateAccount") >= 1

    await eventually(erin_was_shed, 15, "the SDK's CreateAccount shed")
    assert not creating.done()  # waiting for the hint, not failed
    await bob.answer(offer_id)
    async with asyncio.timeout(30):
        await connecting
        account = await creating
    assert account.handle == "erin"
    await client.close()
    listening.cancel()
    for peer in (alice, bob):
        await peer.conn.close()
