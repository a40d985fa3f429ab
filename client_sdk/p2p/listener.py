"""Keeping a device's Listen stream open, and saying when offers can reach it.

The supernode delivers offers for a device only while the device's Listen stream is open
on it. That stream breaks when the supernode restarts or shuts down (it ends listeners
with UNAVAILABLE "listen elsewhere"), when the network drops, or when keepalive finds the
connection dead; until the device listens again, callers get ``PeerOffline`` although the
directory shows it online. So the listener opens a new stream after each break, with
jittered backoff, on the next target when the current one is down, for as long as the
app iterates ``incoming()`` and the client is open.

``ready`` tells the app (and tests) when offers can reach it: set on each ``ListenReady``,
which the supernode sends once the stream is registered, and cleared as soon as the
stream breaks. Waiting on it replaces sleeping before a caller connects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import grpc

from client_sdk.errors import Closed, Unavailable, error_from_rpc
from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rpc
from client_sdk.retry import StreamAction, after_stream_failure

log = logging.getLogger(__name__)


class SignalingConnection(Protocol):
    """A logged-in channel to one supernode (``client_sdk.transport.DirectoryConnection``)."""

    target: str
    channel: grpc.aio.Channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]: ...


class SignalingSession(Protocol):
    """What peer to peer needs of the client's session (``client_sdk.session.Session``):
    a logged-in connection to the current target, and its failover and backoff rules."""

    @property
    def closed(self) -> bool: ...

    async def connection(self) -> SignalingConnection: ...

    def failover(self, from_address: str) -> None: ...

    def forget_token(self, address: str) -> None: ...

    async def backoff(self, failures: int) -> None: ...


def after_listen_failure(
    code: grpc.StatusCode, *, was_ready: bool, relogged_in: bool
) -> StreamAction:
    """What the listener does when its stream ends with ``code`` (``RESUME``: listen on
    the same target again, after a backoff).

    ABORTED is a newer Listen for this device taking over (the app listens twice): final.
    FAILED_PRECONDITION (no live record) before the first ``ListenReady`` is an app that
    never registered the device: final. After one, it is a target that has not seen our
    record yet (we failed over to it): the lease renewal, which follows the same target,
    registers it there, so listen again after a backoff. The rest is the watch's rule.
    """
    if code == grpc.StatusCode.ABORTED:
        return StreamAction.FAIL
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return StreamAction.RESUME if was_ready else StreamAction.FAIL
    return after_stream_failure(code, received=was_ready, relogged_in=relogged_in)


class Listener:
    """The Listen stream of one device, reopened after every break (see the module doc).

    One per P2P agent; :meth:`run` is what an iterated ``incoming()`` runs. ``reconnects``
    counts streams that broke and were replaced, like ``Watch.reconnects``.
    """

    def __init__(self, session: SignalingSession, device_id: str) -> None:
        self._session = session
        self.device_id = device_id
        self.ready = asyncio.Event()
        self.reconnects = 0

    async def run(self, on_offer: Callable[[pb.IncomingOffer], None]) -> None:
        """Listen until cancelled or the client closes (then return); hand each offer to
        ``on_offer``. Raises a ``SupernodeError`` only for what listening again cannot fix
        (the device is not registered, another listener took over, login refused)."""
        failures = 0
        relogged_in = False
        while not self._session.closed:
            try:
                connection = await self._session.connection()
            except Closed:
                return
            except Unavailable as exc:  # a listener outlives outages: keep trying
                log.info("listen: no supernode reachable (%s); retrying", exc)
                await self._session.backoff(failures)
                failures += 1
                continue
            stub = rpc.RendezvousServiceStub(connection.channel)  # type: ignore[no-untyped-call]
            call = stub.Listen(
                pb.ListenRequest(device_id=self.device_id), metadata=connection.metadata
            )
            was_ready = False
            error: grpc.aio.AioRpcError | None = None
            try:
                async for signal in call:
                    if signal.HasField("ready"):
                        was_ready = True
                        failures = 0
                        relogged_in = False
                        self.ready.set()
                    elif signal.HasField("offer"):
                        on_offer(signal.offer)
                action = StreamAction.FAILOVER  # ended without a status: listen again
            except grpc.aio.AioRpcError as exc:
                error = exc
                action = after_listen_failure(
                    exc.code(), was_ready=was_ready, relogged_in=relogged_in
                )
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise
                # grpc.aio raises CancelledError, not a status, from a call cancelled on
                # our side without our asking: its channel was closed (the client closing).
                action = StreamAction.FAILOVER
            finally:
                self.ready.clear()
                call.cancel()
            if self._session.closed:  # closing the client cancelled the stream
                return
            if action is StreamAction.FAIL:
                assert error is not None
                raise error_from_rpc(error) from error
            self.reconnects += 1
            if action is StreamAction.RELOGIN:
                relogged_in = True
                self._session.forget_token(connection.target)
                continue
            if action is StreamAction.FAILOVER:
                self._session.failover(connection.target)
            ended = "no status" if error is None else f"{error.code().name} {error.details()}"
            log.info("listen: stream to %s ended (%s); listening again", connection.target, ended)
            await self._session.backoff(failures)
            failures += 1


def _being_cancelled() -> bool:
    """Whether the running task itself was asked to stop (not merely a call inside it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
