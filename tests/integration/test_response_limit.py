"""No answer is larger than the operator's ``max_response_bytes`` (issue 16), whatever a
caller asks for: LookupMany answers in part and lists the rest, which the SDK asks for
again; a Watch whose snapshot would not fit is refused with the limit's name."""

from collections.abc import Callable

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.sdk_support import Clients

LIMIT = 64 * 1024  # the smallest allowed: one large account's answer (~37 KB) still fits


async def register_large_devices(
    conn: DirectoryConnection, identity: Identity, handle: str
) -> None:
    """16 devices at the record limits (16 endpoints, 16 capabilities of 64 characters)."""
    endpoint = pb.Endpoint(
        address="2001:db8:ffff:ffff:ffff:ffff:ffff:fff0",
        port=65535,
        protocol=pb.TRANSPORT_PROTOCOL_UDP,
        type=pb.CANDIDATE_TYPE_SERVER_REFLEXIVE,
    )
    for index in range(16):
        await conn.register_device(
            device(
                identity,
                handle,
                f"{index:02d}" + "d" * 62,
                endpoints=[endpoint] * 16,
                capabilities=[f"{c:02d}" + "c" * 62 for c in range(16)],
            )
        )


async def test_answers_stay_within_max_response_bytes(
    start_supernode: Callable[..., SupernodeProcess], sdk_clients: Clients
) -> None:
    node = start_supernode("--limits-max-response-bytes", str(LIMIT))
    handles = ["big-0", "big-1", "big-2"]
    async with DirectoryConnection(node.grpc_target) as conn:
        for handle in handles:
            identity = await new_user(conn, handle)
            await register_large_devices(conn, identity, handle)
        asked = [*handles, "nobody-here", *handles]
        answer = await conn.lookup_many(asked)
        assert answer.ByteSize() <= LIMIT
        assert answer.unanswered, "three 37 KB answers cannot fit in 64 KB"
        settled = [r.account.handle for r in answer.results] + list(answer.not_found)
        assert sorted(settled + list(answer.unanswered)) == sorted(dict.fromkeys(asked))

        call = conn.watch(handles)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_response_bytes" in (refused.value.details() or "")
        assert refused.value.details().startswith("handles: the snapshot of 3 handles")

    reader = await sdk_clients.user(node.grpc_target, "reader")
    found = await reader.lookup_many([*handles, "nobody-here"])
    assert found["nobody-here"] is None
    assert all(len(found[h].devices) == 16 for h in handles)  # type: ignore[union-attr]
