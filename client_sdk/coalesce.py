"""Concurrent single lookups gathered into one batch call (the DataLoader pattern).

An app resolves contacts one by one, often many at once (a contact list opening, a group
call starting): each ``Lookup`` costs a gRPC round trip and, on the server, a whole call's
CPU, while one ``LookupMany`` answers a hundred handles for little more than one. The
``Coalescer`` turns keys asked for together into one batch, transparently: each caller
awaits its own key and gets its own value or its own error.

"Together" means within one turn of the event loop by default: keys asked for by tasks
that run in the same turn (``asyncio.gather`` of lookups) share a batch, and a lone lookup
waits for nothing but the rest of the turn. A positive ``window_seconds`` gathers for up to
that long instead: the bound on the latency coalescing adds. A batch leaves as soon as it
holds ``max_batch`` keys. Keys asked for while a batch is in flight go in the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What a batch call answers for each key: its value, or the error that key's caller gets.
BatchFetch = Callable[[list[K]], Awaitable[Mapping[K, "V | Exception"]]]


class Coalescer(Generic[K, V]):
    """Batches the keys its callers ``load`` concurrently into calls of ``fetch``.

    ``fetch(keys)`` answers every key it is given, each with a value or an exception; if
    it raises instead, every caller of that batch gets the error. A key asked for twice in
    one batch is fetched once. A caller that is cancelled leaves the others' batch alone.
    """

    def __init__(
        self, fetch: BatchFetch[K, V], *, max_batch: int, window_seconds: float = 0.0
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if window_seconds < 0:
            raise ValueError("window_seconds must not be negative")
        self._fetch = fetch
        self._max_batch = max_batch
        self._window_seconds = window_seconds
        self._pending: dict[K, list[asyncio.Future[V]]] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # for tests and benchmarks: how many fetch calls ran

    async def load(self, key: K) -> V:
        """The value for ``key``, fetched in a batch with the keys asked for alongside."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.setdefault(key, []).append(future)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = (
                loop.call_later(self._window_seconds, self._flush)
                if self._window_seconds > 0
                else loop.call_soon(self._flush)
            )
        return await future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, {}
        if not batch:
            return
        self.batches_sent += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            answers = await self._fetch(list(batch))
        except BaseException as error:  # every caller of the batch gets it, even cancellation
            for futures in batch.values():
                _fail(futures, error)
            if not isinstance(error, Exception):
                raise
            return
        for key, futures in batch.items():
            if key not in answers:
                _fail(futures, LookupError(f"the batch answered nothing for {key!r}"))
                continue
            answer = answers[key]
            if isinstance(answer, Exception):
                _fail(futures, answer)
            else:
                for future in futures:
                    if not future.done():  # done: its caller was cancelled
                        future.set_result(answer)

    async def close(self) -> None:
        """Cancel what is queued and in flight; their callers get ``CancelledError``."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for futures in self._pending.values():
            for future in futures:
                future.cancel()
        self._pending = {}
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _fail(futures: list[asyncio.Future[V]], error: BaseException) -> None:
    for future in futures:
        if future.done():  # its caller was cancelled
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
