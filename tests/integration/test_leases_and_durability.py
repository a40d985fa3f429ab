"""Acceptance 3, 4 and 7: lease expiry and sweep, SIGKILL durability, SIGTERM under load."""

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import grpc

from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from supernode.store import Store
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.waiting import eventually


async def test_short_lease_expires_and_is_swept(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    node = start_supernode("--lease-min-ttl-seconds", "1", "--sweep-interval-seconds", "0.2")
    async with DirectoryConnection(node.grpc_target) as conn:
        alice = await new_user(conn, "alice")
        await conn.register_device(device(alice, "alice", "short", ttl=2))
        await conn.register_device(device(alice, "alice", "long", ttl=600))
        assert sample(node.metrics(), "supernode_devices_online") == 2
        expired_before = sample(node.metrics(), "supernode_lease_expirations_total")

        async def short_is_gone() -> bool:
            found = await conn.lookup("alice")
            return [
                pb.DeviceRecord.FromString(d.signed.record).device_id for d in found.devices
            ] == ["long"]

        await eventually(short_is_gone)

        async def swept() -> bool:
            return sample(node.metrics(), "supernode_lease_expirations_total") == expired_before + 1

        await eventually(swept)
        assert sample(node.metrics(), "supernode_devices_online") == 1
    assert node.terminate() == 0
    store = Store(tmp_path / "data", block_cache_bytes=1 << 20)
    try:
        short, long = store.device_slot("alice", "short"), store.device_slot("alice", "long")
        assert short is not None and not short.live  # a tombstone keeps its seq against replays
        assert long is not None and long.live
        assert store.live_devices("alice", 0) == [store.raw_device_value("alice", "long")[16:]]  # type: ignore[index]
    finally:
        store.close()


async def test_acknowledged_writes_survive_sigkill(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = start_supernode(data_dir=data_dir)
    acknowledged: dict[str, list[pb.SignedDeviceRecord]] = {}
    async with DirectoryConnection(node.grpc_target) as conn:
        for n in range(20):
            handle = f"user{n:02d}"
            identity = await new_user(conn, handle)
            records = [device(identity, handle, f"d{k}", ttl=600) for k in range(2)]
            for record in records:
                await conn.register_device(record)
            acknowledged[handle] = records
        await conn.unregister_device("d1")  # user19's second device: must stay gone
        acknowledged["user19"] = acknowledged["user19"][:1]
    node.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    node.process.wait(10)  # type: ignore[union-attr]

    restarted = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(restarted.grpc_target) as conn:
        await new_user(conn, "reader")
        for handle, records in acknowledged.items():
            found = await conn.lookup(handle)
            assert found.account.handle == handle
            assert sorted(d.signed.record for d in found.devices) == sorted(
                r.record for r in records
            )
    assert sample(restarted.metrics(), "supernode_accounts") == 21


async def test_sigterm_during_load_drains_and_exits_zero(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        alice = await new_user(conn, "alice")
        await conn.register_device(device(alice, "alice", "phone", ttl=600))
        outcomes: list[str] = []
        stop = asyncio.Event()

        async def hammer() -> None:
            while not stop.is_set():
                try:
                    found = await conn.lookup("alice")
                    assert len(found.devices) == 1
                    outcomes.append("ok")
                except grpc.aio.AioRpcError as error:
                    # Calls racing the drain are refused before any handler runs (GOAWAY, or
                    # a cancelled unmatched stream); nothing else may fail.
                    assert error.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.CANCELLED,
                    ), error
                    outcomes.append("refused")
                    return

        workers = [asyncio.create_task(hammer()) for _ in range(16)]
        await eventually(lambda: _true_after(outcomes, 200))
        exit_code = await asyncio.to_thread(node.terminate)
        stop.set()
        await asyncio.gather(*workers)
    assert exit_code == 0
    assert outcomes.count("ok") >= 200
    node.wait_for("supernode stopped cleanly")
    store = Store(data_dir, block_cache_bytes=1 << 20)  # reopens: lock released, no corruption
    try:
        assert store.device_slot("alice", "phone") is not None
    finally:
        store.close()


async def _true_after(outcomes: list[str], count: int) -> bool:
    return len(outcomes) >= count
