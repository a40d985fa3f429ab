"""The status-to-error table and the retry rules."""

import grpc
import pytest

from client_sdk import errors
from client_sdk.protocol.refusals import Reason
from client_sdk.retry import Action, StreamAction, after_failure, after_stream_failure

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (Code.INVALID_ARGUMENT, errors.InvalidArgument),
        (Code.UNAUTHENTICATED, errors.Unauthenticated),
        (Code.PERMISSION_DENIED, errors.PermissionDenied),
        (Code.NOT_FOUND, errors.NotFound),
        (Code.ALREADY_EXISTS, errors.AlreadyExists),
        (Code.FAILED_PRECONDITION, errors.Stale),
        (Code.RESOURCE_EXHAUSTED, errors.RateLimited),
        (Code.UNAVAILABLE, errors.Unavailable),
        (Code.DEADLINE_EXCEEDED, errors.Unavailable),
    ],
)
def test_each_status_maps_to_one_error_with_the_server_message(
    code: grpc.StatusCode, cls: type[errors.SupernodeError]
) -> None:
    error = errors.error_from_rpc(grpc.aio.AioRpcError(code, None, None, "handle: too short"))
    assert type(error) is cls
    assert isinstance(error, errors.SupernodeError)
    assert error.code == code
    assert error.message == "handle: too short" == str(error)


def test_unlisted_status_is_the_base_error_and_keeps_its_code() -> None:
    error = errors.error_from_status(Code.INTERNAL, None)
    assert type(error) is errors.SupernodeError
    assert error.code == Code.INTERNAL
    assert "internal" in error.message


def test_sdk_side_errors_are_supernode_errors_without_a_status() -> None:
    changed = errors.KeyChanged("bob", b"\x01" * 32, b"\x02" * 32)
    assert isinstance(changed, errors.SupernodeError) and changed.code is None
    assert changed.handle == "bob" and "bob" in str(changed)
    assert issubclass(errors.SignatureError, errors.SupernodeError)


@pytest.mark.parametrize("code", [Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED])
def test_unreachable_slow_or_stopping_targets_fail_over(code: grpc.StatusCode) -> None:
    assert after_failure(code, authenticated=True, relogged_in=False) is Action.FAILOVER
    assert after_failure(code, authenticated=False, relogged_in=True) is Action.FAILOVER


def test_a_refused_token_gets_exactly_one_fresh_login() -> None:
    code = Code.UNAUTHENTICATED
    assert after_failure(code, authenticated=True, relogged_in=False) is Action.RELOGIN
    assert after_failure(code, authenticated=True, relogged_in=True) is Action.FAIL
    assert after_failure(code, authenticated=False, relogged_in=False) is Action.FAIL


@pytest.mark.parametrize(
    "code",
    [Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED, Code.FAILED_PRECONDITION],
)
def test_answers_about_the_request_are_not_retried(code: grpc.StatusCode) -> None:
    assert after_failure(code, authenticated=True, relogged_in=False) is Action.FAIL


def test_a_slow_reader_cut_off_mid_stream_resumes_but_a_watch_limit_is_final() -> None:
    code = Code.RESOURCE_EXHAUSTED
    assert after_stream_failure(code, received=True, relogged_in=False) is StreamAction.RESUME
    assert after_stream_failure(code, received=False, relogged_in=False) is StreamAction.FAIL


def test_a_watch_reads_the_reason_of_its_cut_off_over_when_it_came() -> None:
    code = Code.RESOURCE_EXHAUSTED

    def rule(reason: str, received: bool) -> StreamAction:
        return after_stream_failure(code, received=received, relogged_in=False, reason=reason)

    assert rule(Reason.TOO_SLOW, received=False) is StreamAction.RESUME
    assert rule(Reason.WATCH_LIMIT, received=True) is StreamAction.FAIL
    assert rule(Reason.REQUEST_TOO_LARGE, received=True) is StreamAction.FAIL


def test_stream_rules_otherwise_follow_the_unary_ones() -> None:
    def stream(code: grpc.StatusCode, relogged_in: bool = False) -> StreamAction:
        return after_stream_failure(code, received=True, relogged_in=relogged_in)

    assert stream(Code.UNAVAILABLE) is StreamAction.FAILOVER
    assert stream(Code.CANCELLED) is StreamAction.FAILOVER
    assert stream(Code.UNAUTHENTICATED) is StreamAction.RELOGIN
    assert stream(Code.UNAUTHENTICATED, relogged_in=True) is StreamAction.FAIL
    assert stream(Code.INVALID_ARGUMENT) is StreamAction.FAIL
