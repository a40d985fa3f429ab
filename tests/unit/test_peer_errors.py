"""A peer's refusal comes back as the same status (supernode.cluster.peers.remote_error):
a forwarded call's client sees the owner's status and message, whatever the code; only an
unreachable peer (UNAVAILABLE, DEADLINE_EXCEEDED) or a status no node sends becomes
Unavailable naming the node, without gRPC's own details (addresses, socket errors)."""

from __future__ import annotations

import grpc
import pytest

from supernode.cluster.peers import remote_error
from supernode.errors import InvalidField, NotFound, Reason, Unavailable
from supernode.rpc.handlers import STATUS_OF, refusal_status, status_of

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def refused(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize("code", sorted(set(STATUS_OF.values()) - set(UNREACHABLE), key=str))
def test_every_refusal_keeps_its_status_and_message(code: grpc.StatusCode) -> None:
    error = remote_error("node-b", refused(code, f"handle: refused with {code.name}"))
    assert status_of(error) is code
    assert str(error) == f"handle: refused with {code.name}"


@pytest.mark.parametrize("code", UNREACHABLE)
def test_an_unreachable_peer_is_unavailable_and_named(code: grpc.StatusCode) -> None:
    error = remote_error("node-b", refused(code, "ipv4:10.1.2.3:7701: connect failed"))
    assert isinstance(error, Unavailable) and "node-b" in str(error)
    assert "10.1.2.3" not in str(error) and "connect failed" not in str(error)


def test_a_status_we_never_send_is_unavailable_not_unknown() -> None:
    for code in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        error = remote_error("node-b", refused(code, "Exception calling application: /x.sock"))
        assert status_of(error) is grpc.StatusCode.UNAVAILABLE
        assert "node-b" in str(error) and "x.sock" not in str(error)


def test_a_refusal_keeps_its_reason_and_field_for_the_client() -> None:
    """The coordinator relays the owner's reason (and its field violation follows from the
    same message), so a client of any node branches on the same details."""
    own = NotFound("offer_id: not pending", reason=Reason.OFFER_NOT_FOUND)
    code, message, trailers = refusal_status(own)
    relayed = remote_error(
        "node-b",
        grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), message),
    )
    assert relayed.reason is Reason.OFFER_NOT_FOUND
    assert refusal_status(relayed) == (code, message, trailers)
    field = refused(grpc.StatusCode.INVALID_ARGUMENT, "record.seq: must be at least 1")
    assert (
        refusal_status(remote_error("node-b", field))[2]
        == refusal_status(InvalidField("record.seq: must be at least 1"))[2]
    )
    newer = refused(grpc.StatusCode.NOT_FOUND, "handle: no account 'x'")  # no details at all
    assert remote_error("node-b", newer).reason is Reason.ACCOUNT_NOT_FOUND
