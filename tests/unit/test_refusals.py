"""The rich error model of a refusal (``client_sdk.protocol.refusals``): the reasons the
Python code knows are those ``errors.proto`` lists, and what the server writes is what
the SDK reads (reason, field violation, retry delay)."""

from __future__ import annotations

import grpc
import pytest

from client_sdk.errors import InvalidArgument, NotFound, error_from_rpc
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.refusals import (
    FieldViolation,
    Reason,
    error_reason,
    field_violations,
    known_reason,
    retry_delay_ms,
)
from client_sdk.protocol.v1 import errors_pb2
from supernode import errors
from supernode.rpc.handlers import STATUS_OF, refusal_status


def test_the_reasons_are_the_protos_error_reasons() -> None:
    listed = set(errors_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert {reason.value for reason in Reason} == listed
    assert all(reason.name == reason.value for reason in Reason)


def test_every_server_error_class_has_a_reason() -> None:
    for cls in STATUS_OF:
        assert isinstance(cls.reason, Reason), cls  # type: ignore[attr-defined]


def test_a_refused_field_carries_its_violation() -> None:
    code, _, trailers = refusal_status(
        InvalidField("record.endpoints[2].port: 0 is not in 1-65535")
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(trailers) == Reason.INVALID_FIELD
    assert field_violations(trailers) == [
        FieldViolation("record.endpoints[2].port", "0 is not in 1-65535")
    ]
    assert retry_delay_ms(trailers) is None
    skew = errors.InvalidArgument("record.issued_at_ms: 3600 s in the past", Reason.CLOCK_SKEW)
    assert error_reason(refusal_status(skew)[2]) == Reason.CLOCK_SKEW


def test_a_raise_names_its_own_reason_over_its_class_default() -> None:
    assert errors.NotFound("handle: no account 'x'").reason == Reason.ACCOUNT_NOT_FOUND
    offer = errors.NotFound("offer_id: not pending", reason=Reason.OFFER_NOT_FOUND)
    assert error_reason(refusal_status(offer)[2]) == Reason.OFFER_NOT_FOUND
    assert field_violations(refusal_status(offer)[2]) == []


@pytest.mark.parametrize("text", ["", "SOMETHING_NEWER"])
def test_an_unknown_reason_is_told_by_its_code_alone(text: str) -> None:
    assert known_reason(text) is None
    assert known_reason("HANDLE_TAKEN") is Reason.HANDLE_TAKEN


class _Error:
    """The parts of grpc.aio.AioRpcError that error_from_rpc reads."""

    def __init__(self, exc: Exception) -> None:
        self._code, self._details, self._trailers = refusal_status(exc)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailers


def test_the_sdk_error_carries_reason_and_violations() -> None:
    refused = error_from_rpc(_Error(InvalidField("handle: required")))  # type: ignore[arg-type]
    assert type(refused) is InvalidArgument
    assert refused.reason == Reason.INVALID_FIELD
    assert refused.violations == (FieldViolation("handle", "required"),)
    missing = error_from_rpc(_Error(errors.NotFound("handle: no account 'x'")))  # type: ignore[arg-type]
    assert type(missing) is NotFound and missing.reason == Reason.ACCOUNT_NOT_FOUND
    assert missing.violations == ()
