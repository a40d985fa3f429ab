"""What the P2P listener does after its Listen stream ends: every status, both phases."""

import grpc
import pytest

from client_sdk.p2p.listener import after_listen_failure
from client_sdk.retry import StreamAction

RETRIED = {
    grpc.StatusCode.UNAVAILABLE: StreamAction.FAILOVER,  # restart, shutdown "listen elsewhere"
    grpc.StatusCode.DEADLINE_EXCEEDED: StreamAction.FAILOVER,
    grpc.StatusCode.CANCELLED: StreamAction.FAILOVER,  # a proxy or the server dropped it
}


@pytest.mark.parametrize("was_ready", [False, True])
@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_every_status(code: grpc.StatusCode, was_ready: bool) -> None:
    action = after_listen_failure(code, was_ready=was_ready, relogged_in=False)
    if code in RETRIED:
        assert action is RETRIED[code]
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        assert action is StreamAction.RELOGIN
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        # Before any ListenReady: the device was never registered. After: a target that
        # has not seen the record yet; the lease renewal puts it there.
        assert action is (StreamAction.RESUME if was_ready else StreamAction.FAIL)
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and was_ready:
        assert action is StreamAction.RESUME
    else:
        assert action is StreamAction.FAIL


def test_a_newer_listener_for_the_device_is_final() -> None:
    action = after_listen_failure(grpc.StatusCode.ABORTED, was_ready=True, relogged_in=False)
    assert action is StreamAction.FAIL


def test_a_refused_token_after_a_fresh_login_is_final() -> None:
    code = grpc.StatusCode.UNAUTHENTICATED
    assert after_listen_failure(code, was_ready=True, relogged_in=True) is StreamAction.FAIL
