"""Acceptance 1 and 2: a serving node (health, reflection, metrics) and the directory flow."""

from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.records import device


async def test_node_is_serving_with_health_reflection_and_metrics(
    supernode: SupernodeProcess,
) -> None:
    async with grpc.aio.insecure_channel(supernode.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "supernode.v1.PresenceService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        names: set[str] = set()
        async for answer in stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        ):
            names |= {s.name for s in answer.list_services_response.service}
        assert {
            "supernode.v1.AccountService",
            "supernode.v1.SessionService",
            "supernode.v1.PresenceService",
            "grpc.health.v1.Health",
        } <= names
    assert "supernode_devices_online" in supernode.metrics()


async def test_register_lookup_unregister_flow(connect: Callable[[], DirectoryConnection]) -> None:
    alice_conn, bob_conn, carol_conn = connect(), connect(), connect()
    alice = await new_user(alice_conn, "alice")
    await new_user(bob_conn, "bob")
    await new_user(carol_conn, "carol")
    phone = device(alice, "alice", "phone")
    laptop = device(alice, "alice", "laptop")
    for record in (phone, laptop):
        granted = await alice_conn.register_device(record)
        assert granted.ttl_seconds == 60

    found = await bob_conn.lookup("alice")
    assert found.account.account_key == alice.public_key
    assert sorted(d.signed.record for d in found.devices) == sorted([phone.record, laptop.record])
    for d in found.devices:
        assert signature_is_valid(
            found.account.account_key, DEVICE_RECORD_DOMAIN, d.signed.record, d.signed.signature
        )
        assert pb.DeviceRecord.FromString(d.signed.record).handle == "alice"

    many = await bob_conn.lookup_many(["alice", "carol", "bob", "nobody"])
    assert [(r.account.handle, len(r.devices)) for r in many.results] == [
        ("alice", 2),
        ("carol", 0),
        ("bob", 0),
    ]
    assert list(many.not_found) == ["nobody"]

    assert await alice_conn.unregister_device("phone")
    after = await carol_conn.lookup("alice")
    assert [pb.DeviceRecord.FromString(d.signed.record).device_id for d in after.devices] == [
        "laptop"
    ]
    assert not await alice_conn.unregister_device("phone")


async def test_an_unregister_with_a_seq_buries_every_record_up_to_it(
    connect: Callable[[], DirectoryConnection],
) -> None:
    """A client that sent seqs 6 and 7 without seeing their answers says so: afterwards no
    record at or below 7 is taken (one still on its way would be a replay), a newer one is."""
    conn = connect()
    alice = await new_user(conn, "alice")
    await conn.register_device(device(alice, "alice", "phone", 5))
    assert await conn.unregister_device("phone", seq=7)
    for late in (6, 7):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await conn.register_device(device(alice, "alice", "phone", late))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "is not greater than the stored 7" in (refused.value.details() or "")
    assert not (await conn.lookup("alice")).devices
    await conn.register_device(device(alice, "alice", "phone", 8))
    assert len((await conn.lookup("alice")).devices) == 1


async def test_an_unregister_with_a_seq_buries_a_device_never_seen_and_only_raises(
    connect: Callable[[], DirectoryConnection],
) -> None:
    conn = connect()
    alice = await new_user(conn, "alice")
    assert not await conn.unregister_device("tablet", seq=4), "nothing was running"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await conn.register_device(device(alice, "alice", "tablet", 4))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert not await conn.unregister_device("tablet", seq=2), "a lower seq lowers nothing"
    with pytest.raises(grpc.aio.AioRpcError):
        await conn.register_device(device(alice, "alice", "tablet", 3))
    await conn.register_device(device(alice, "alice", "tablet", 5))
