"""The retry hint a supernode sends with a refusal made to protect itself.

It is gRPC's own retry-pushback trailer (gRPC proposal A6, "Client Retries"): the server
puts ``grpc-retry-pushback-ms: <milliseconds>`` in the trailing metadata of a failed call,
and the client waits that long before its next attempt. A value that is not a non-negative
integer means "do not retry", exactly as gRPC's own retry logic reads it. The supernode
sends it only with a RESOURCE_EXHAUSTED that says nothing about the request (load
shedding); every other RESOURCE_EXHAUSTED (a device cap, a watch limit) comes without it.
"""

from __future__ import annotations

from collections.abc import Iterable

PUSHBACK_METADATA_KEY = "grpc-retry-pushback-ms"

Metadata = Iterable[tuple[str, str | bytes]]


def pushback_metadata(retry_after_ms: int) -> tuple[tuple[str, str]]:
    """The trailing metadata that asks a client to wait ``retry_after_ms`` (>= 0)."""
    if retry_after_ms < 0:
        raise ValueError(f"retry pushback: {retry_after_ms} ms, must be >= 0")
    return ((PUSHBACK_METADATA_KEY, str(retry_after_ms)),)


def pushback_ms(metadata: Metadata | None) -> int | None:
    """The hint in ``metadata``, or None when there is none (or it says "do not retry")."""
    for key, value in metadata or ():
        if key != PUSHBACK_METADATA_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return int(text) if text.isascii() and text.isdigit() else None
    return None
