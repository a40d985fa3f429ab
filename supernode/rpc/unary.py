"""One wrapper for every unary method: parse, call, map errors, record metrics.

This is deliberately not an interceptor: interceptors cost a coroutine and a context object
per call, while this wrapper is bound once per method at start-up.
"""

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from supernode import errors
from supernode.metrics import Metrics

log = logging.getLogger(__name__)

# The one table from domain errors to gRPC status codes.
STATUS_OF: dict[type[errors.SupernodeError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

RequestT = TypeVar("RequestT", bound=Message)
Behavior = Callable[[RequestT, grpc.aio.ServicerContext], bytes | Message]


def status_of(error: errors.SupernodeError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = STATUS_OF.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def unary_handler(
    method: str,
    request_type: type[RequestT],
    behavior: Behavior[RequestT],
    metrics: Metrics,
) -> grpc.RpcMethodHandler:
    """A gRPC method handler over raw bytes that runs the synchronous ``behavior``."""
    parse = request_type.FromString
    type_name = request_type.DESCRIPTOR.full_name
    rpc_metrics = metrics.rpc(method)

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = perf_counter()
        code = grpc.StatusCode.OK
        try:
            try:
                request = parse(raw)
            except DecodeError as exc:
                raise errors.InvalidArgument(f"request: not a serialized {type_name}") from exc
            response: Any = behavior(request, context)
            return response if isinstance(response, bytes) else response.SerializeToString()
        except errors.SupernodeError as exc:
            code = status_of(exc)
            message = str(exc)
        except Exception:
            log.exception("%s failed", method)
            code = grpc.StatusCode.INTERNAL
            message = "internal error (logged by the supernode)"
        finally:
            rpc_metrics.observe(code, perf_counter() - started)
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return grpc.unary_unary_rpc_method_handler(handle)
