"""SDK clients, watch collectors and same-port restarts for the SDK integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from client_sdk import Client, ClientConfig, EventKind, Identity, PinStore, PresenceEvent, Watch
from client_sdk.backoff import Backoff
from tests.integration.process import SupernodeProcess
from tests.integration.waiting import eventually

# Patient enough to ride out a supernode restart (a second or two), quick to retry.
# Plaintext, as the test nodes (tests/integration/process.py); tests/integration/test_tls.py
# is where TLS is exercised.
TEST_CONFIG = ClientConfig(
    plaintext=True,
    call_deadline_seconds=3.0,
    max_attempts=30,
    backoff=Backoff(initial_seconds=0.05, maximum_seconds=0.5),
)
FAST_LEASES = ("--lease-min-ttl-seconds", "1", "--sweep-interval-seconds", "0.2")

StartSupernode = Callable[..., SupernodeProcess]


def unique(prefix: str) -> str:
    """A handle no other test (or earlier run on the same data dir) has used."""
    return f"{prefix}-{secrets.token_hex(3)}"


def restart_on_same_port(start: StartSupernode, node: SupernodeProcess) -> SupernodeProcess:
    """SIGKILL ``node`` and start a new process on its data dir and gRPC port, as an
    operator's supervisor would, so clients reconnect to the same address."""
    node.kill()
    return start(*node.extra_args, "--listen", node.grpc_target, data_dir=node.data_dir)


def unused_target() -> str:
    """A loopback address where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class Clients:
    """Opens SDK clients and closes them all when the test ends."""

    opened: list[Client] = field(default_factory=list)

    def open(
        self,
        targets: str | list[str],
        handle: str,
        identity: Identity | None = None,
        *,
        pin_store: PinStore | None = None,
        config: ClientConfig = TEST_CONFIG,
    ) -> Client:
        identity = identity or Identity.generate()
        client = Client(targets, identity, handle, pin_store=pin_store, config=config)
        self.opened.append(client)
        return client

    async def user(
        self,
        targets: str | list[str],
        prefix: str,
        *,
        pin_store: PinStore | None = None,
        config: ClientConfig = TEST_CONFIG,
    ) -> Client:
        """A client whose account exists (display name: the prefix, capitalized)."""
        client = self.open(targets, unique(prefix), pin_store=pin_store, config=config)
        await client.create_account(prefix.title())
        return client


@contextlib.asynccontextmanager
async def open_clients() -> AsyncIterator[Clients]:
    opened = Clients()
    try:
        yield opened
    finally:
        for client in opened.opened:
            await client.close()


class Collector:
    """Drains a watch into a list in the background, so tests can wait on what arrived."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.events: list[PresenceEvent] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for event in self.watch:
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    async def wait_for(
        self, matches: Callable[[PresenceEvent], bool], within: float = 15.0
    ) -> PresenceEvent:
        """The first event (received so far or later) that ``matches``."""

        async def arrived() -> bool:
            if self.error is not None:
                raise self.error
            return any(matches(event) for event in self.events)

        await eventually(arrived, within)
        return next(event for event in self.events if matches(event))

    async def close(self) -> None:
        await self.watch.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def watching(client: Client, *handles: str) -> Collector:
    """A watch of ``handles`` by ``client``, collected, once its snapshot arrived."""
    watch = Collector(client.watch(handles))
    await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
    return watch
