"""The retry hint a supernode sends with a refusal that a later attempt would pass.

Two standard carriers, both sent, both read:

* gRPC's own retry-pushback trailer (gRPC proposal A6, "Client Retries"): the server puts
  ``grpc-retry-pushback-ms: <milliseconds>`` in the trailing metadata of a failed call,
  and the client waits that long before its next attempt. A value that is not a
  non-negative integer means "do not retry", exactly as gRPC's own retry logic reads it.
* the rich error model (``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer,
  as ``grpc_status.rpc_status`` writes it) with a ``google.rpc.RetryInfo`` detail, which
  clients in other languages read (``RetryInfo.retry_delay``), and a
  ``google.rpc.ErrorInfo`` whose reason says why (``OVERLOADED``: the node shed the call
  to protect itself; ``RATE_LIMITED``: the caller went over a rate limit).

The supernode sends them only with a RESOURCE_EXHAUSTED that a retry after the delay would
pass (load shedding, a rate limit); every other RESOURCE_EXHAUSTED (a device cap, a watch
limit) comes without them.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import ErrorInfo, RetryInfo
from google.rpc.status_pb2 import Status

PUSHBACK_METADATA_KEY = "grpc-retry-pushback-ms"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "supernode"
RESOURCE_EXHAUSTED_CODE = 8  # google.rpc.Code.RESOURCE_EXHAUSTED

Metadata = Iterable[tuple[str, str | bytes]]


def pushback_metadata(retry_after_ms: int) -> tuple[tuple[str, str]]:
    """The trailing metadata that asks a client to wait ``retry_after_ms`` (>= 0)."""
    if retry_after_ms < 0:
        raise ValueError(f"retry pushback: {retry_after_ms} ms, must be >= 0")
    return ((PUSHBACK_METADATA_KEY, str(retry_after_ms)),)


def retry_metadata(
    message: str, retry_after_ms: int, reason: str, **about: str
) -> tuple[tuple[str, str | bytes], ...]:
    """Both trailers of a RESOURCE_EXHAUSTED that may be retried after ``retry_after_ms``.

    ``message`` must be the status message the call ends with: readers of the rich error
    model (``grpc_status.rpc_status.from_call``) check that the two agree.
    """
    delay = Duration()
    delay.FromMilliseconds(retry_after_ms)
    status = Status(code=RESOURCE_EXHAUSTED_CODE, message=message)
    status.details.add().Pack(RetryInfo(retry_delay=delay))
    status.details.add().Pack(ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=about))
    return (*pushback_metadata(retry_after_ms), (STATUS_DETAILS_KEY, status.SerializeToString()))


def pushback_ms(metadata: Metadata | None) -> int | None:
    """The hint in ``metadata``, or None when there is none (or it says "do not retry").

    ``RetryInfo`` wins over the pushback trailer when both are there (a proxy may have
    dropped one; they agree when the supernode sent both)."""
    pushback: int | None = None
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            delay = _retry_info_ms(value)
            if delay is not None:
                return delay
        elif key == PUSHBACK_METADATA_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            pushback = int(text) if text.isascii() and text.isdigit() else None
    return pushback


def error_reason(metadata: Metadata | None) -> str:
    """The ``ErrorInfo`` reason of a refusal (``OVERLOADED``, ``RATE_LIMITED``), or ""."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            for detail in _details(value):
                info = ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


def _details(raw: bytes) -> list[AnyMessage]:
    try:
        return list(Status.FromString(raw).details)
    except DecodeError:
        return []


def _retry_info_ms(raw: bytes) -> int | None:
    for detail in _details(raw):
        info = RetryInfo()
        if detail.Unpack(info):
            ms = info.retry_delay.ToMilliseconds()
            return ms if ms >= 0 else None
    return None
