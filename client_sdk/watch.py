"""``Watch``: presence events for a set of handles, as an async iterator that outlives streams.

A background task holds the gRPC stream open, feeds each message to the pure
``WatchState`` and queues the events it returns for the app. When the stream breaks (the
supernode restarts, is unreachable, or cut us off for reading too slowly) the task opens a
new one (on the next target if the current one is down; on the same one, after at least its
retry hint, if it was overloaded and refused to open it), asking to resume from the last
position; the supernode then replays exactly what was missed, or sends a fresh snapshot
that reaches the app flagged ``after_gap``. The app sees one uninterrupted sequence.

The queue is bounded: when the app does not keep up, the task stops reading, and the
supernode's own slow-consumer rule applies (we resume after it cuts us off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import grpc

from client_sdk.errors import (
    RateLimited,
    SignatureError,
    Unavailable,
    error_from_rpc,
    retry_hint_of,
)
from client_sdk.pins import PinStore
from client_sdk.protocol.refusals import error_reason
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.retry import StreamAction, after_stream_failure
from client_sdk.session import Session
from client_sdk.types import Account, Presence, PresenceEvent, WatchPosition
from client_sdk.watch_state import WatchState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _End:
    """Queued last: the watch is over, because of ``error`` or because it was closed."""

    error: BaseException | None = None


class Watch:
    """Presence events of ``handles``: ``async for event in watch``; ``await watch.close()``.

    Created by ``Client.watch``. Raises from iteration only what reconnecting cannot fix:
    a refused request (``InvalidArgument``, ``RateLimited`` for too many watches), a
    record that does not verify (``SignatureError``) or a changed key (``KeyChanged``).
    """

    def __init__(
        self,
        session: Session,
        pins: PinStore,
        handles: Iterable[str],
        fetch_account: Callable[[str], Awaitable[Account]],
        on_close: Callable[[Watch], None] = lambda watch: None,
    ) -> None:
        self._session = session
        self._state = WatchState(handles, pins)
        self._fetch_account = fetch_account
        self._on_close = on_close
        self._queue: asyncio.Queue[PresenceEvent | _End] = asyncio.Queue(
            maxsize=session.config.watch_buffer
        )
        self._finished = False
        self.reconnects = 0
        self._task = asyncio.create_task(self._run(), name=f"watch {sorted(self.handles)}")

    @property
    def handles(self) -> frozenset[str]:
        """The handles followed."""
        return self._state.handles

    @property
    def position(self) -> WatchPosition | None:
        """Where the watch stands in the supernode's change log (``None`` before the first
        snapshot); it resumes from here after a reconnect."""
        return self._state.position

    @property
    def view(self) -> Mapping[str, Presence]:
        """Presence of the watched handles as of the last event received (maybe not yet
        taken from the iterator)."""
        return self._state.view

    @property
    def in_sync(self) -> bool:
        """Whether ``view`` is current: the stream is open and in sync, and the app keeps up
        (a full event buffer stops reading, and the view would fall behind)."""
        return self._state.synced and not self._finished and not self._queue.full()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> PresenceEvent:
        if self._finished:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """Stop following; iteration ends (after events already queued are dropped)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._finished = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_End())  # wakes a reader waiting on an empty queue
        self._on_close(self)

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the app gets it from iteration, in order
            await self._queue.put(_End(exc))

    async def _follow(self) -> None:
        failures = 0
        relogged_in = False
        while True:
            try:
                connection = await self._session.connection()
            except RateLimited as exc:  # logging in was shed or rate limited: keep trying
                if exc.retry_after_seconds is None:
                    raise
                log.info("watch: supernode refused for now (%s); retrying", exc)
                await self._session.wait_pushback(round(exc.retry_after_seconds * 1000), failures)
                failures += 1
                continue
            except Unavailable as exc:  # a watch outlives outages: keep trying
                log.info("watch: no supernode reachable (%s); retrying", exc)
                await self._session.backoff(failures)
                failures += 1
                continue
            epoch, revision = self._state.resume_from()
            call = connection.watch(sorted(self.handles), epoch, revision)
            self._state.stream_opened()
            received = False
            hint: int | None = None
            try:
                async for message in call:
                    received = True
                    failures = 0
                    relogged_in = False
                    await self._deliver(message)
                continue_after = StreamAction.FAILOVER  # ended without a status: reconnect
                error: grpc.aio.AioRpcError | None = None
            except grpc.aio.AioRpcError as exc:
                error = exc
                hint = retry_hint_of(exc, self._session.config.backoff.pushback_cap_seconds)
                continue_after = after_stream_failure(
                    exc.code(),
                    received=received,
                    relogged_in=relogged_in,
                    pushback_ms=hint,
                    reason=error_reason(exc.trailing_metadata()),
                )
            finally:
                call.cancel()
                self._state.stream_closed()
            self.reconnects += 1
            if continue_after is StreamAction.FAIL:
                assert error is not None
                raise error_from_rpc(error) from error
            if continue_after is StreamAction.RELOGIN:
                relogged_in = True
                self._session.forget_token(connection.target)
                continue
            if continue_after is StreamAction.WAIT:  # shed while opening: reopen there
                assert hint is not None
                await self._session.wait_pushback(hint, failures)
                failures += 1
                continue
            if continue_after is StreamAction.FAILOVER:
                log.info("watch: stream to %s ended (%s); reconnecting", connection.target, error)
                self._session.failover(connection.target)
                await self._session.backoff(failures)
                failures += 1

    async def _deliver(self, message: pb.WatchEvent) -> None:
        handle = self._state.unknown_account(message)
        if handle is not None:
            self._state.learn_account(await self._fetch_account(handle))
        try:
            events = self._state.apply(message)
        except SignatureError:
            # The account may have rotated its key since the snapshot: fetch it (the pin
            # follows a valid chain, any other change is KeyChanged) and check again.
            handle = message.change.handle
            if message.WhichOneof("event") != "change" or handle not in self._state.view:
                raise
            if not self._state.learn_account(await self._fetch_account(handle)):
                raise
            events = self._state.apply(message)
        for event in events:
            await self._queue.put(event)
