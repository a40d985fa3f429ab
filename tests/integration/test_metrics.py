"""Acceptance 6: /metrics is scraped and parsed; the listed metrics exist and move."""

import platform
from collections.abc import Callable

import grpc
import pytest

from client_sdk.transport import DirectoryConnection
from supernode import __version__
from tests.integration.conftest import new_user
from tests.integration.metrics import sample, samples, wait_until
from tests.integration.process import SupernodeProcess
from tests.integration.records import device

_BUILD = {
    "version": __version__,
    "python": platform.python_version(),
    "grpc": grpc.__version__,
}


async def test_metrics_are_exported_and_move(
    supernode: SupernodeProcess, connect: Callable[[], DirectoryConnection]
) -> None:
    before = supernode.metrics()
    for name in (
        "supernode_accounts",
        "supernode_devices_online",
        "supernode_store_size_bytes",
        "supernode_lease_expirations_total",
    ):
        assert any(key[0] == name for key in samples(before)), name
    conn = connect()
    alice = await new_user(conn, "alice")
    await conn.register_device(device(alice, "alice", "phone"))
    for _ in range(3):
        await conn.lookup("alice")
    with pytest.raises(grpc.aio.AioRpcError):
        await conn.lookup("nobody")

    after = supernode.metrics()
    assert sample(after, "supernode_accounts") == sample(before, "supernode_accounts") + 1
    assert sample(after, "supernode_devices_online") == 1
    assert sample(after, "supernode_store_size_bytes") > 0
    assert supernode.total("supernode_rpc_requests_total", method="Lookup", code="OK") == 3
    assert supernode.total("supernode_rpc_requests_total", method="Lookup", code="NOT_FOUND") == 1
    assert supernode.total("supernode_rpc_requests_total", method="RegisterDevice", code="OK") == 1
    assert supernode.total("supernode_rpc_handler_seconds_count", method="Lookup", code="OK") == 3
    assert supernode.total("supernode_rpc_handler_seconds_sum", method="Lookup", code="OK") > 0
    assert (
        supernode.total(
            "supernode_rpc_handler_seconds_bucket", method="Lookup", code="OK", le="+Inf"
        )
        == 3
    )
    # Arrival to response sent: recorded once gRPC reports the call done, which may come a
    # moment after the client has its answer.
    wait_until(
        lambda: (
            supernode.total("supernode_rpc_latency_seconds_count", method="Lookup", code="OK") == 3
        )
    )
    handler = supernode.total("supernode_rpc_handler_seconds_sum", method="Lookup", code="OK")
    latency = supernode.total("supernode_rpc_latency_seconds_sum", method="Lookup", code="OK")
    assert latency > handler  # it covers the handler, and the reading and writing around it
    wait_until(lambda: supernode.total("supernode_rpc_in_flight", method="Lookup") == 0)
    assert supernode.total("supernode_rpc_latency_seconds_count", method="Lookup", code="NOT_FOUND")
    assert sample(after, "supernode_build_info", **_BUILD) == 1
    assert sample(after, "process_resident_memory_bytes") > 0
    assert sample(after, "supernode_device_changes_total", change="online") == 1
