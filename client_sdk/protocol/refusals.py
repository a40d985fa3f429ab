"""How a supernode tells a refusal: the rich error model that any language can read.

Every deliberate refusal ends with a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer (as ``grpc_status.rpc_status`` writes it) holding a ``google.rpc.ErrorInfo``
(domain :data:`ERROR_DOMAIN`, a :class:`Reason`), a ``google.rpc.BadRequest`` naming
the refused field for INVALID_ARGUMENT, and a ``google.rpc.RetryInfo`` when the same call
passes after a delay (``client_sdk.protocol.pushback``). The contract, for other
languages, is ``protos/supernode/v1/errors.proto``; :class:`Reason` lists the same names
(a unit test keeps the two equal). Clients branch on the reason, never on message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RetryInfo
from google.rpc.status_pb2 import Status

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "supernode.v1"

Metadata = Iterable[tuple[str, str | bytes]]


class Reason(StrEnum):
    """The ``ErrorInfo.reason`` of a refusal: the names of ``supernode.v1.ErrorReason``,
    whose comments say what each means and which status it comes with."""

    INVALID_FIELD = "INVALID_FIELD"
    CLOCK_SKEW = "CLOCK_SKEW"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    SESSION_REVOKED = "SESSION_REVOKED"
    CHALLENGE_INVALID = "CHALLENGE_INVALID"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    CHALLENGE_USED = "CHALLENGE_USED"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    ACCOUNT_KEY_WEAK = "ACCOUNT_KEY_WEAK"
    NOT_OWNER = "NOT_OWNER"
    TOKEN_AUDIENCE = "TOKEN_AUDIENCE"
    CALL_DECLINED = "CALL_DECLINED"
    TICKET_INVALID = "TICKET_INVALID"
    INTERNAL_ONLY = "INTERNAL_ONLY"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    OFFER_NOT_FOUND = "OFFER_NOT_FOUND"
    HANDLE_TAKEN = "HANDLE_TAKEN"
    STALE_SEQ = "STALE_SEQ"
    DEVICE_NOT_REGISTERED = "DEVICE_NOT_REGISTERED"
    PEER_NOT_LISTENING = "PEER_NOT_LISTENING"
    LEASE_ENDED = "LEASE_ENDED"
    RATE_LIMITED = "RATE_LIMITED"
    OVERLOADED = "OVERLOADED"
    DEVICE_LIMIT = "DEVICE_LIMIT"
    WATCH_LIMIT = "WATCH_LIMIT"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    TOO_SLOW = "TOO_SLOW"
    RELAY_LIMIT = "RELAY_LIMIT"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    RESYNC = "RESYNC"
    NOT_READY = "NOT_READY"
    REPLICAS_UNAVAILABLE = "REPLICAS_UNAVAILABLE"
    PRIMARY_UNAVAILABLE = "PRIMARY_UNAVAILABLE"
    CALLEE_NO_ANSWER = "CALLEE_NO_ANSWER"
    RELAY_EXPIRED = "RELAY_EXPIRED"
    SUPERSEDED = "SUPERSEDED"
    CONFLICT = "CONFLICT"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """Which field of a request was refused, and why (a ``BadRequest.FieldViolation``)."""

    field: str
    description: str


def status_details(
    code: int,
    message: str,
    reason: str,
    *,
    violation: FieldViolation | None = None,
    retry_after_ms: int | None = None,
    about: Mapping[str, str] | None = None,
) -> bytes:
    """The serialized ``google.rpc.Status`` of a refusal.

    ``code`` and ``message`` must be the call's status code (its number) and message:
    readers of the rich error model (``grpc_status.rpc_status.from_call``) check that
    the two agree."""
    status = Status(code=code, message=message)
    status.details.add().Pack(ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=about))
    if violation is not None:
        bad = BadRequest()
        bad.field_violations.add(field=violation.field, description=violation.description)
        status.details.add().Pack(bad)
    if retry_after_ms is not None:
        delay = Duration()
        delay.FromMilliseconds(retry_after_ms)
        status.details.add().Pack(RetryInfo(retry_delay=delay))
    return status.SerializeToString()


def details_of(metadata: Metadata | None) -> list[AnyMessage]:
    """The details of the rich status in a call's trailing metadata ([] when none)."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return list(Status.FromString(value).details)
            except DecodeError:
                return []
    return []


def error_reason(metadata: Metadata | None) -> str:
    """The ``ErrorInfo`` reason of a refusal (a :class:`Reason` value), or "" when the
    error did not come from a supernode's decision (gRPC's own, or an older node)."""
    for detail in details_of(metadata):
        info = ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def known_reason(text: str) -> Reason | None:
    """``text`` as a :class:`Reason`, or None for "" or a reason this version does not know
    (a newer server's): such an error is told by its status code alone."""
    try:
        return Reason(text)
    except ValueError:
        return None


def field_violations(metadata: Metadata | None) -> list[FieldViolation]:
    """The refused fields a ``BadRequest`` detail names, in order."""
    for detail in details_of(metadata):
        bad = BadRequest()
        if detail.Unpack(bad):
            return [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return []


def retry_delay_ms(metadata: Metadata | None) -> int | None:
    """The ``RetryInfo`` delay in milliseconds, or None (none, or negative)."""
    for detail in details_of(metadata):
        info = RetryInfo()
        if detail.Unpack(info):
            ms = info.retry_delay.ToMilliseconds()
            return ms if ms >= 0 else None
    return None
