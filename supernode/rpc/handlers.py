"""One wrapper per kind of method: shed, parse, call, map errors, record metrics.

Deliberately not interceptors: an interceptor costs a coroutine and a context object per
call, while these wrappers are bound once per method at start-up. The one interceptor a
node has (``supernode.rpc.arrival``) only stamps the call's arrival, which nothing later
can see.

Load shedding (``supernode.overload``) is the first thing a gated handler does, before it
parses the request: two integer comparisons when the node is healthy; when it is not, the
call ends at once with RESOURCE_EXHAUSTED, a message saying when to retry and the standard
``grpc-retry-pushback-ms`` trailer. A handler built without ``shedding`` (the internal
cluster service) or for an exempt method is not gated. Rate limits (``supernode.rate``)
are checked by the behaviors, which know the caller; every refusal that a later attempt
would pass (``errors.RetryLater``: shed or rate limited) carries the hint twice, as that
trailer and as a ``google.rpc.RetryInfo`` detail (``client_sdk.protocol.pushback``).

Every refusal, whatever its kind, ends with the rich error details of
``client_sdk.protocol.refusals`` (:func:`refusal_status`): the error's ``ErrorInfo``
reason, and for a refused field its ``BadRequest`` violation (``protos/supernode/v1/
errors.proto`` is the contract).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from client_sdk.protocol.pushback import pushback_metadata
from client_sdk.protocol.refusals import STATUS_DETAILS_KEY, status_details
from supernode import errors
from supernode.metrics import Metrics, RpcMetrics
from supernode.overload import Lane, Overloaded, Shedding

log = logging.getLogger(__name__)

# The one table from domain errors to gRPC status codes.
STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    # A field check raises InvalidField (shared with the SDK); InvalidArgument is its
    # SupernodeError form, named too so a peer's status maps back to it (cluster.peers).
    errors.InvalidField: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Aborted: grpc.StatusCode.ABORTED,
}

# Trailing metadata on every refusal a handler of ours makes (see _refusal); a worker strips
# it before relaying, so a client never sees it.
REFUSAL_METADATA = "supernode-refusal"

RequestT = TypeVar("RequestT", bound=Message)
Behavior = Callable[
    [RequestT, grpc.aio.ServicerContext], bytes | Message | Awaitable[bytes | Message]
]


StreamBehavior = Callable[[RequestT, grpc.aio.ServicerContext], AsyncIterator[bytes]]


def _parser(request_type: type[RequestT]) -> Callable[[bytes], RequestT]:
    parse = request_type.FromString
    type_name = request_type.DESCRIPTOR.full_name

    def parse_or_refuse(raw: bytes) -> RequestT:
        try:
            return parse(raw)
        except DecodeError as exc:
            raise errors.InvalidArgument(
                f"request: not a serialized {type_name}", errors.Reason.MALFORMED_REQUEST
            ) from exc

    return parse_or_refuse


def status_of(error: Exception) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = STATUS_OF.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def _lane(method: str, shedding: Shedding | None) -> Lane | None:
    return None if shedding is None else shedding.lane(method)


Trailer = tuple[str, str | bytes]


def refusal_status(exc: Exception) -> tuple[grpc.StatusCode, str, tuple[Trailer, ...]]:
    """The status, message and trailers that tell a refusal (``errors.REFUSALS``).

    The trailers hold the rich error model (``client_sdk.protocol.refusals``): the
    ``ErrorInfo`` reason always, a ``BadRequest`` field violation for a refused field, and
    for one to retry later the ``RetryInfo`` and ``grpc-retry-pushback-ms`` hint."""
    message = str(exc)
    code = status_of(exc)
    reason = getattr(exc, "reason", errors.Reason.INVALID_FIELD)
    violation = exc.violation if isinstance(exc, errors.InvalidField) else None
    retry_after_ms: int | None = None
    about: dict[str, str] | None = None
    trailing: tuple[Trailer, ...] = ()
    if isinstance(exc, errors.RetryLater):
        retry_after_ms, about = exc.retry_after_ms, exc.about
        trailing = pushback_metadata(retry_after_ms)
    details = status_details(
        code.value[0],
        message,
        reason,
        violation=violation,
        retry_after_ms=retry_after_ms,
        about=about,
    )
    return code, message, (*trailing, (STATUS_DETAILS_KEY, details))


async def abort_refused(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """End a call with the refusal ``exc`` (its status, message and details): for the
    edges that refuse outside a handler of ours (a worker's gate and proxy)."""
    code, message, details = refusal_status(exc)
    context.set_trailing_metadata(details)
    await context.abort(code, message)


def _refusal(
    exc: Exception, context: grpc.aio.ServicerContext, count_shed: Callable[[], None]
) -> tuple[grpc.StatusCode, str]:
    """The status and message of a refusal, its details set as trailing metadata.

    Every refusal is marked as the node's own (:data:`REFUSAL_METADATA`), so a worker
    relaying it can tell the primary's deliberate UNAVAILABLE ("resume to resync") from
    gRPC's (the primary is gone), which it must not pass on with gRPC's internal details."""
    if isinstance(exc, Overloaded):
        count_shed()
    code, message, details = refusal_status(exc)
    # Added to what the handler set already (a presence answer's epoch trailer).
    context.set_trailing_metadata(
        (*(context.trailing_metadata() or ()), (REFUSAL_METADATA, "1"), *details)
    )
    return code, message


def unary_handler(
    method: str,
    request_type: type[RequestT],
    behavior: Behavior[RequestT],
    metrics: Metrics,
    shedding: Shedding | None = None,
) -> grpc.RpcMethodHandler:
    """A gRPC method handler over raw bytes around ``behavior``.

    Most behaviors answer synchronously (storage is a local RocksDB call); those that wait
    for another party (a callee's answer, another node of the cluster) return an awaitable.
    A gated call counts as in flight from before parsing until its answer is ready.
    """
    parse = _parser(request_type)
    rpc_metrics = metrics.rpc(method)
    count_shed = metrics.shed_counter(method)
    lane = _lane(method, shedding)

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        arrived = rpc_metrics.start()
        started = perf_counter()
        code = grpc.StatusCode.OK
        try:
            if lane is not None:
                lane.enter()  # raises Overloaded, counting nothing
            try:
                response: Any = behavior(parse(raw), context)
                if not isinstance(response, bytes | Message):  # an answer another node gives
                    response = await response
            finally:
                if lane is not None:
                    lane.leave()
            return response if isinstance(response, bytes) else response.SerializeToString()
        except errors.REFUSALS as exc:
            code, message = _refusal(exc, context, count_shed)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away while we waited
            raise
        except Exception:
            log.exception("%s failed", method)
            code = grpc.StatusCode.INTERNAL
            message = "internal error (logged by the supernode)"
        finally:
            rpc_metrics.observe(code, perf_counter() - started)
            rpc_metrics.done(code, arrived)  # the answer goes to gRPC's C core next
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return grpc.unary_unary_rpc_method_handler(handle)


def server_stream_handler(
    method: str,
    request_type: type[RequestT],
    behavior: StreamBehavior[RequestT],
    metrics: Metrics,
    shedding: Shedding | None = None,
) -> grpc.RpcMethodHandler:
    """A server-streaming handler over raw bytes; ``behavior`` yields serialized messages.

    A gated stream counts as in flight while it opens: until its first message (a watch's
    snapshot, a listener's ready), which is where its cost lies; an open stream that waits
    for news costs nothing and is bounded elsewhere (watches per session, connections).
    """
    parse = _parser(request_type)
    rpc_metrics = metrics.rpc(method)
    count_shed = metrics.shed_counter(method)
    lane = _lane(method, shedding)

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async def responses() -> AsyncIterator[bytes]:
            async for response in behavior(parse(raw), context):
                yield response

        async def opened_within_lane(lane: Lane) -> AsyncIterator[bytes]:
            lane.enter()
            opening = True
            try:
                async for response in behavior(parse(raw), context):
                    if opening:
                        opening = False
                        lane.leave()
                    yield response
            finally:
                if opening:
                    lane.leave()

        stream = responses() if lane is None else opened_within_lane(lane)
        async for response in _observed(method, stream, rpc_metrics, context, count_shed):
            yield response

    return grpc.unary_stream_rpc_method_handler(handle)


async def _observed(
    method: str,
    responses: AsyncIterator[bytes],
    rpc_metrics: RpcMetrics,
    context: grpc.aio.ServicerContext,
    count_shed: Callable[[], None],
) -> AsyncIterator[bytes]:
    """Relay a stream's responses; map its errors to statuses and record its metrics."""
    arrived = rpc_metrics.start()
    started = perf_counter()
    code = grpc.StatusCode.OK
    message = ""
    try:
        async for response in responses:
            yield response
    except errors.REFUSALS as exc:
        code, message = _refusal(exc, context, count_shed)
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away (or the call ended otherwise while this generator waited
        # in a yield: gRPC then closes it there).
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception:
        log.exception("%s failed", method)
        code = grpc.StatusCode.INTERNAL
        message = "internal error (logged by the supernode)"
    finally:
        rpc_metrics.observe(code, perf_counter() - started)
        rpc_metrics.done(code, arrived)
    if code is not grpc.StatusCode.OK:
        await context.abort(code, message)


StreamStreamBehavior = Callable[
    [AsyncIterator[bytes], grpc.aio.ServicerContext], AsyncIterator[bytes]
]


def stream_stream_handler(
    method: str, behavior: StreamStreamBehavior, metrics: Metrics
) -> grpc.RpcMethodHandler:
    """A bidirectional handler over raw frames; ``behavior`` parses them itself."""
    rpc_metrics = metrics.rpc(method)
    count_shed = metrics.shed_counter(method)

    async def handle(
        frames: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        responses = behavior(frames, context)
        async for response in _observed(method, responses, rpc_metrics, context, count_shed):
            yield response

    return grpc.stream_stream_rpc_method_handler(handle)


ServiceHandlers = dict[str, dict[str, grpc.RpcMethodHandler]]


def merge_services(*parts: ServiceHandlers) -> ServiceHandlers:
    """One table of method handlers from several parts (which may add to one service)."""
    services: ServiceHandlers = {}
    for part in parts:
        for service, methods in part.items():
            services.setdefault(service, {}).update(methods)
    return services


def register_services(server: grpc.aio.Server, *parts: ServiceHandlers) -> list[str]:
    """Register method handlers (several parts may add methods to one service)."""
    services = merge_services(*parts)
    for service, methods in services.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        server.add_registered_method_handlers(service, methods)
    return list(services)
