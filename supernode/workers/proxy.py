"""Forward calls, byte for byte, from a worker to its primary.

A generic handler: the request and response bytes are never parsed, the caller's metadata
(its bearer token) and remaining deadline go along, with the private socket's secret
(``supernode.workers.gate``), and the primary's answer comes back unchanged (status,
details, trailing metadata), so a client cannot tell which process served it.

Except when the primary did not answer: it died, is restarting, or the private socket broke
mid-call. gRPC then reports UNAVAILABLE, UNKNOWN, INTERNAL or CANCELLED with its own text,
which names the private socket; a client once got UNKNOWN for writes that had committed.
Those all become one deliberate UNAVAILABLE whose message says the outcome is unknown: the
SDK retries UNAVAILABLE, and every write is idempotent (a retried registration carries the
same seq, a retried account creation finds its own account).
Cancelling the client's call cancels the forwarded one (grpc.aio cancels an RPC whose
pending read is cancelled).

Back-pressure crosses the worker: a stream relay reads the primary's next response only
once the client has taken the last one, and the channel to the primary receives into a
fixed window (:func:`supernode.transport.open_upstream`), so a client that stops reading
stalls the primary's writes, as it would on one process, and the primary's own bounds (a
watcher's queue) act. A watcher or listener the primary cut off for not reading is freed
on the primary at once; its stream ends, through this relay, when the client reads again
(or its connection ends): a stuck relay holds the window and one message, nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor

from supernode.errors import Reason, Unavailable
from supernode.rpc.handlers import REFUSAL_METADATA, refusal_status
from supernode.rpc.source import PEER_METADATA
from supernode.workers.gate import secret_metadata, without_secret


# Headers gRPC sets itself (reserved grpc-*, pseudo-headers, user-agent) are not
# forwarded, nor a client's claim of where it is (the worker says that itself); everything
# else is the caller's (its bearer token among them).
def _forwarded(key: str) -> bool:
    return not (key.startswith(("grpc-", ":")) or key in ("user-agent", PEER_METADATA))


AfterUnary = Callable[[str], Awaitable[None]]


def _metadata(
    context: grpc.aio.ServicerContext, auth: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str | bytes], ...]:
    """The caller's metadata (less any copy of our secret), its address for the primary's
    per-source rate limits (``supernode.rpc.source``) and the worker's secret (``auth``)."""
    caller = tuple(
        (key, value) for key, value in context.invocation_metadata() or () if _forwarded(key)
    )
    return (*without_secret(caller), (PEER_METADATA, context.peer() or ""), *auth)


# What gRPC itself reports when the primary did not answer (no process, a broken socket).
# The primary's own refusals use other codes (or UNAVAILABLE meaning the same: "try again").
_NOT_ANSWERED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)
PRIMARY_UNAVAILABLE = (
    "this supernode's serving process is unavailable (restarting); the call's outcome is "
    "unknown, a write may have been applied: retry it, writes are idempotent"
)


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


Trailer = tuple[str, str | bytes]


def relayed_status(
    code: grpc.StatusCode, details: str, trailing: Iterable[Trailer]
) -> tuple[grpc.StatusCode, str, tuple[Trailer, ...]]:
    """What a client gets for the primary's final status: the primary's own refusal as it
    made it (less the mark that tells it is one); anything gRPC reports instead (no
    primary, a broken socket, a status our handlers never send) is one UNAVAILABLE without
    gRPC's details (they name the private socket), with reason PRIMARY_UNAVAILABLE. The
    primary's trailers (the rich error details among them) pass through unchanged."""
    trailing = tuple(trailing)
    deliberate = any(key == REFUSAL_METADATA for key, _ in trailing)
    if code in _NOT_ANSWERED and not deliberate:
        return refusal_status(Unavailable(PRIMARY_UNAVAILABLE, reason=Reason.PRIMARY_UNAVAILABLE))
    kept = tuple((key, value) for key, value in trailing if key != REFUSAL_METADATA)
    return code, details, kept


async def _relay_error(context: grpc.aio.ServicerContext, exc: grpc.aio.AioRpcError) -> None:
    code, details, trailing = relayed_status(
        exc.code(), exc.details() or "", exc.trailing_metadata() or ()
    )
    if trailing:
        context.set_trailing_metadata(trailing)
    await context.abort(code, details)


class Forwarder:
    """Method handlers that forward to ``channel`` (the primary)."""

    def __init__(self, channel: grpc.aio.Channel, after_unary: AfterUnary, secret: str) -> None:
        self._channel = channel
        self._auth = secret_metadata(secret)
        self._after_unary = after_unary  # read-your-writes: wait to have caught up

    def handlers(self, methods: Iterable[MethodDescriptor]) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = {}
        for method in methods:
            path = f"/{method.containing_service.full_name}/{method.name}"
            if method.client_streaming and method.server_streaming:
                handler = self._stream_stream(path)
            elif method.server_streaming:
                handler = self._unary_stream(path)
            elif not method.client_streaming:
                handler = self._unary_unary(path)
            else:
                raise ValueError(f"{path}: client-streaming methods are not forwarded")
            services.setdefault(method.containing_service.full_name, {})[method.name] = handler
        return services

    def _unary_unary(self, path: str) -> grpc.RpcMethodHandler:
        call = self._channel.unary_unary(path)
        after, auth = self._after_unary, self._auth

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                response: bytes = await call(
                    request, metadata=_metadata(context, auth), timeout=_timeout(context)
                )
            except grpc.aio.AioRpcError as exc:
                await _relay_error(context, exc)
                raise AssertionError("unreachable: abort raises") from exc
            await after(path)
            return response

        return grpc.unary_unary_rpc_method_handler(handle)

    def _unary_stream(self, path: str) -> grpc.RpcMethodHandler:
        open_call, auth = self._channel.unary_stream(path), self._auth

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            call = open_call(request, metadata=_metadata(context, auth), timeout=_timeout(context))
            async for response in _responses(call, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(handle)

    def _stream_stream(self, path: str) -> grpc.RpcMethodHandler:
        open_call, auth = self._channel.stream_stream(path), self._auth

        async def handle(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            call = open_call(requests, metadata=_metadata(context, auth), timeout=_timeout(context))
            async for response in _responses(call, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(handle)


async def _responses(call: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """The primary's responses, then its status (an error status ends the client's call
    with the same code, details and trailing metadata). ``call``: a grpc.aio streaming
    call (an async iterator of responses with ``add_done_callback``)."""
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as exc:
        await _relay_error(context, exc)
