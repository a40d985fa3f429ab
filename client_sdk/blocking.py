"""The bridge from blocking code to the SDK's event loop, running in a thread of its own.

The async client needs a running loop for its background work (lease renewal, watches,
peer connections), which a plain script does not have. ``LoopThread`` runs one forever in
a daemon thread and hands each blocking call over to it; ``BlockingIterator`` turns an
async iterator living in that loop into a blocking one with timeouts. Both turn "the loop
is gone" into ``Closed``, so a facade used after ``close()`` says so in the SDK's terms.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from client_sdk.errors import Closed

T = TypeVar("T")
U = TypeVar("U")


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str = "supernode-sdk") -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()  # orders submissions against stop()
        self._stopped = False
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` began: nothing more runs in the loop."""
        return self._stopped

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` in the loop; ``Closed`` if the loop is stopped."""
        with self._lock:
            if self._stopped:
                coroutine.close()  # never awaited: say so quietly, not with a warning
                raise Closed("the client is closed")
            if threading.current_thread() is self._thread:
                coroutine.close()
                raise RuntimeError("a blocking SDK call from inside the SDK's own loop thread")
            return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` in the loop and wait for its result.

        ``TimeoutError`` after ``timeout`` seconds (the coroutine is cancelled);
        ``Closed`` if the loop stopped before it finished.
        """
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None
        except concurrent.futures.CancelledError:
            raise Closed("the client was closed while the call was running") from None

    def call(self, function: Callable[[], T]) -> T:
        """Run a plain function in the loop thread (where the client's state lives)."""

        async def call() -> T:
            return function()

        return self.run(call())

    def stop(self) -> None:
        """Cancel whatever still runs in the loop (its waiters get ``Closed``), then stop
        and close the loop. Safe to call twice."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


async def _close_iterator(iterator: AsyncIterator[object]) -> None:
    """End an async iterator that has a way to end (an async generator's ``aclose``)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class BlockingIterator(Generic[T, U]):
    """An async iterator of the loop (yielding ``T``) as a blocking one (yielding ``U``).

    ``for item in it`` or ``it.next(timeout)``. The next item is fetched ahead, as soon as
    the iterator is created and after each item, so the async side runs (listens, reads
    its stream) while the caller blocks elsewhere. A timeout leaves that fetch running: no
    item is lost, and the next call picks it up. ``convert`` maps each item in the loop
    thread (e.g. wraps an async object in its blocking facade); ``close`` ends the async
    side (by default an async generator's ``aclose``).
    """

    def __init__(
        self,
        loop: LoopThread,
        iterator: AsyncIterator[T],
        convert: Callable[[T], U],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._loop = loop
        self._iterator = iterator
        self._convert = convert
        self._close = close or (lambda: _close_iterator(iterator))
        self._fetch: asyncio.Future[T] | None = None  # touched only in the loop thread
        self._finished = False
        self._loop.run(self._start_fetch())

    def __iter__(self) -> BlockingIterator[T, U]:
        return self

    def __next__(self) -> U:
        item = self.next()
        if item is None:
            raise StopIteration
        return item

    def next(self, timeout: float | None = None) -> U | None:
        """The next item; ``None`` once the iteration is over (or its client closed);
        ``TimeoutError`` after ``timeout`` seconds without one. Errors of the async
        iterator are raised here, in order."""
        if self._finished or self._loop.stopped:
            self._finished = True
            return None
        try:
            return self._loop.run(self._next(), timeout)
        except Closed:
            if not self._loop.stopped:
                raise  # the async iterator's own error
            self._finished = True
            return None

    async def _start_fetch(self) -> None:
        if self._fetch is None and not self._finished:
            self._fetch = asyncio.ensure_future(anext(self._iterator))

    async def _next(self) -> U | None:
        await self._start_fetch()
        fetch = self._fetch
        if fetch is None:
            return None
        try:
            # A timed-out caller cancels this coroutine, never the fetch (shield).
            item = await asyncio.shield(fetch)
        except StopAsyncIteration:
            self._fetch, self._finished = None, True
            return None
        except asyncio.CancelledError:
            if fetch.cancelled():  # closed under us
                self._fetch, self._finished = None, True
            raise
        except BaseException:
            self._fetch, self._finished = None, True
            raise
        self._fetch = None
        await self._start_fetch()
        return self._convert(item)

    def close(self) -> None:
        """End the iteration (dropping an item fetched ahead); safe to call twice."""
        if self._loop.stopped:
            self._finished = True
            return
        self._loop.run(self._shut())

    async def _shut(self) -> None:
        self._finished = True
        fetch, self._fetch = self._fetch, None
        if fetch is not None:
            fetch.cancel()
            await asyncio.gather(fetch, return_exceptions=True)
        await self._close()

    def __enter__(self) -> BlockingIterator[T, U]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
