"""Who may use the workers' private socket: only the processes the primary started.

The private socket is an abstract unix socket: it has no file permissions, so any process
of any user in the network namespace can find it in ``/proc/net/unix`` and connect, and it
serves the replication feed (every change's handle), the store's sequence, and every public
method as if a client's call came through a worker. So the primary makes a random secret
at every start, hands it to each worker it spawns on the worker's stdin (a pipe only the
two hold; argv is readable by every local user in ``/proc/<pid>/cmdline``, the environment
by the same user in ``/proc/<pid>/environ``), and the private server checks it on every
call before any handler runs (``hmac.compare_digest``). A caller without it gets
PERMISSION_DENIED, whatever it asked. (A process of the node's own user can read the
workers' memory anyway: the boundary is the user account, as for the data directory.)

Why a secret rather than SO_PEERCRED: gRPC's Python server exposes no peer credentials, and
a pid check would race with pid reuse after a worker restarts; the secret needs neither.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from supernode.errors import PermissionDenied, Reason
from supernode.rpc.handlers import ServiceHandlers, abort_refused

SECRET_METADATA = "supernode-worker-secret"
_REFUSAL = "this socket serves only the supernode's own worker processes"


def new_secret() -> str:
    """A fresh secret for one start of the primary (256 bits, as text for metadata)."""
    return secrets.token_hex(32)


def secret_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    return ((SECRET_METADATA, secret),)


def without_secret(metadata: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """A client's metadata with any value it sent under our header dropped (a worker
    forwards a client's metadata, and adds its own secret)."""
    return tuple((key, value) for key, value in metadata if key != SECRET_METADATA)


def _presented(metadata: Any, secret: bytes) -> bool:
    for key, value in metadata or ():
        if key == SECRET_METADATA:
            given = value.encode() if isinstance(value, str) else value
            return hmac.compare_digest(given, secret)
    return False


def _denied() -> PermissionDenied:
    return PermissionDenied(_REFUSAL, reason=Reason.INTERNAL_ONLY)


def _refusal_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers PERMISSION_DENIED."""

    async def deny_unary(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        await abort_refused(context, _denied())
        raise AssertionError("unreachable: abort raises")

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await abort_refused(context, _denied())
        yield b""  # pragma: no cover - abort raises

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny_unary)
    return grpc.unary_unary_rpc_method_handler(deny_unary)


class PrivateGate(grpc.GenericRpcHandler):  # type: ignore[misc]
    """The private server's method handlers, given only to calls that carry this start's
    secret; any other call gets a handler of the same shape that answers PERMISSION_DENIED.

    A generic handler, not a server interceptor: gRPC asks it for each call's handler with
    the call's metadata, so the check costs one lookup and a compare before any handler
    runs, and the chosen handler runs exactly as if registered. (A ``grpc.aio`` interceptor
    on this server once kept the primary's cut-off of a stalled watch from reaching the
    worker relaying it: the watcher was never cut off.) The methods must therefore not also
    be registered with ``add_registered_method_handlers``, which would bypass this.
    """

    def __init__(
        self, services: ServiceHandlers, secret: str, on_refused: Callable[[], None] = lambda: None
    ) -> None:
        self._by_path = {
            f"/{service}/{name}": handler
            for service, methods in services.items()
            for name, handler in methods.items()
        }
        self._secret = secret.encode()
        self._on_refused = on_refused

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = self._by_path.get(handler_call_details.method)
        if handler is None or _presented(handler_call_details.invocation_metadata, self._secret):
            return handler
        self._on_refused()
        return _refusal_handler(handler)
