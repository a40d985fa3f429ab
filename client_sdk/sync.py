"""``SyncClient``: the async client behind a blocking API, for scripts and REPLs.

The client needs a running event loop for its background work (lease renewal, watches),
which a plain script does not have; so the facade runs one in a daemon thread and hands
each call over to it. Every method has the meaning, arguments and errors of the
``Client`` method of the same name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from client_sdk.client import Client, RenewalErrorHandler
from client_sdk.config import ClientConfig
from client_sdk.identity import Identity
from client_sdk.pins import PinStore
from client_sdk.types import (
    Account,
    DeviceStatus,
    Endpoint,
    Presence,
    PresenceEvent,
    Registration,
    SearchResult,
)
from client_sdk.watch import Watch

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="supernode-sdk", daemon=True
        )
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.submit(coroutine).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncWatch:
    """A watch as a blocking iterator: ``for event in watch``, or ``watch.next(timeout)``."""

    def __init__(self, watch: Watch, loop: _LoopThread) -> None:
        self._watch = watch
        self._loop = loop

    def __iter__(self) -> SyncWatch:
        return self

    def __next__(self) -> PresenceEvent:
        event = self.next()
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: float | None = None) -> PresenceEvent | None:
        """The next event; ``None`` once the watch is over; ``TimeoutError`` after
        ``timeout`` seconds without one."""
        future = self._loop.submit(self._next())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no watch event within {timeout} s") from None

    async def _next(self) -> PresenceEvent | None:
        try:
            return await self._watch.__anext__()
        except StopAsyncIteration:
            return None

    def close(self) -> None:
        self._loop.run(self._watch.close())

    def __enter__(self) -> SyncWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncClient:
    """Blocking ``Client``: ``with SyncClient([...], identity, "alice") as client: ...``."""

    def __init__(
        self,
        targets: Sequence[str] | str,
        identity: Identity,
        handle: str,
        *,
        pin_store: PinStore | None = None,
        config: ClientConfig | None = None,
        on_renewal_error: RenewalErrorHandler | None = None,
    ) -> None:
        self._loop = _LoopThread()

        async def build() -> Client:  # grpc.aio channels belong to the loop they start in
            return Client(
                targets,
                identity,
                handle,
                pin_store=pin_store,
                config=config,
                on_renewal_error=on_renewal_error,
            )

        self.client = self._loop.run(build())

    def create_account(self, display_name: str = "", *, discoverable: bool = True) -> Account:
        return self._loop.run(self.client.create_account(display_name, discoverable=discoverable))

    def get_account(self, handle: str) -> Account:
        return self._loop.run(self.client.get_account(handle))

    def login(self) -> None:
        self._loop.run(self.client.login())

    def register_device(
        self,
        device_id: str,
        *,
        transport_key: bytes,
        endpoints: Iterable[Endpoint] = (),
        status: DeviceStatus = DeviceStatus.ONLINE,
        capabilities: Iterable[str] = (),
        ttl: int | None = None,
    ) -> Registration:
        return self._loop.run(
            self.client.register_device(
                device_id,
                transport_key=transport_key,
                endpoints=endpoints,
                status=status,
                capabilities=capabilities,
                ttl=ttl,
            )
        )

    def update_status(self, device_id: str, status: DeviceStatus) -> Registration:
        return self._loop.run(self.client.update_status(device_id, status))

    def registration(self, device_id: str) -> Registration | None:
        return self.client.registration(device_id)

    def unregister_device(self, device_id: str) -> bool:
        return self._loop.run(self.client.unregister_device(device_id))

    def lookup(self, handle: str) -> Presence:
        return self._loop.run(self.client.lookup(handle))

    def lookup_many(self, handles: Sequence[str]) -> dict[str, Presence | None]:
        return self._loop.run(self.client.lookup_many(handles))

    def search(self, query: str, limit: int = 0) -> list[SearchResult]:
        return self._loop.run(self.client.search(query, limit))

    def watch(self, handles: Iterable[str]) -> SyncWatch:
        async def start() -> Watch:  # the watch's task must start inside the loop
            return self.client.watch(handles)

        return SyncWatch(self._loop.run(start()), self._loop)

    def close(self) -> None:
        """Close the client (unregistering its devices) and stop the loop thread."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self.client.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
