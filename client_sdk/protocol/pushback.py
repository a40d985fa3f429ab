"""The retry hint a supernode sends with a refusal that a later attempt would pass.

Two standard carriers, both sent, both read:

* gRPC's own retry-pushback trailer (gRPC proposal A6, "Client Retries"): the server puts
  ``grpc-retry-pushback-ms: <milliseconds>`` in the trailing metadata of a failed call,
  and the client waits that long before its next attempt. A value that is not a
  non-negative integer means "do not retry", exactly as gRPC's own retry logic reads it.
* the rich error model (``client_sdk.protocol.refusals``) with a ``google.rpc.RetryInfo``
  detail, which clients in other languages read (``RetryInfo.retry_delay``), beside the
  ``google.rpc.ErrorInfo`` every refusal carries, whose reason says why (``OVERLOADED``:
  the node shed the call to protect itself; ``RATE_LIMITED``: the caller went over a
  rate limit).

The supernode sends them only with a RESOURCE_EXHAUSTED that a retry after the delay would
pass (load shedding, a rate limit); every other RESOURCE_EXHAUSTED (a device cap, a watch
limit) comes without them.
"""

from __future__ import annotations

from client_sdk.protocol.refusals import Metadata, retry_delay_ms

PUSHBACK_METADATA_KEY = "grpc-retry-pushback-ms"


def pushback_metadata(retry_after_ms: int) -> tuple[tuple[str, str]]:
    """The trailing metadata that asks a client to wait ``retry_after_ms`` (>= 0)."""
    if retry_after_ms < 0:
        raise ValueError(f"retry pushback: {retry_after_ms} ms, must be >= 0")
    return ((PUSHBACK_METADATA_KEY, str(retry_after_ms)),)


def pushback_ms(metadata: Metadata | None) -> int | None:
    """The hint in ``metadata``, or None when there is none (or it says "do not retry").

    ``RetryInfo`` wins over the pushback trailer when both are there (a proxy may have
    dropped one; they agree when the supernode sent both)."""
    delay = retry_delay_ms(metadata)
    if delay is not None:
        return delay
    for key, value in metadata or ():
        if key == PUSHBACK_METADATA_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return int(text) if text.isascii() and text.isdigit() else None
    return None
