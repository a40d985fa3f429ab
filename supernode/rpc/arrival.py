"""When a call reached Python: the start of the latency a client's call waits through.

grpc.aio takes one call at a time from the C core (``request_call``), then runs each in a
task of its own: a server interceptor's ``intercept_service`` is the first code of ours in
that task, before the request message is read and before the method handler is looked up.
Registered method handlers (``Server.add_registered_method_handlers``) skip the generic
handler lookup, so an interceptor is the only earlier hook; the time it records travels to
the handler in a context variable, since the handler runs in the same task.

What this start point still misses: time in the kernel's socket buffers and in the C core
(HTTP/2 framing, the queue of calls no ``request_call`` has taken yet). Under load that
queue grows while the event loop is busy, so event-loop lag (``supernode.loop_lag``) is
the metric to read beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import perf_counter

import grpc

# perf_counter() when the call's task started; 0.0 outside a call (a test calling a
# handler directly), where the handler's own start stands in.
_ARRIVED: ContextVar[float] = ContextVar("supernode_call_arrived", default=0.0)


def arrived_at(fallback: float) -> float:
    """This call's arrival time, or ``fallback`` when no interceptor stamped it."""
    return _ARRIVED.get() or fallback


class ArrivalStamp(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # untyped in grpc-stubs
    """Stamps each call's arrival; installed on every server of a node (``transport``).

    One coroutine and one context-variable set per call, about a microsecond against the
    100-350 µs a call costs."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        _ARRIVED.set(perf_counter())
        return await continuation(handler_call_details)
