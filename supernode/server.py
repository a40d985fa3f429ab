"""Assembles one supernode: store, domain, gRPC server, health, reflection, metrics, sweeper.

Lifecycle: :meth:`Supernode.start` opens the store and binds the ports; :meth:`stop` marks
the node NOT_SERVING, drains in-flight calls within the grace period, stops the sweeper and
closes the store cleanly. ``serve`` wires SIGTERM/SIGINT to ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from client_sdk.protocol.v1 import directory_pb2, rendezvous_pb2, search_pb2
from supernode.config import Config, ServerSettings, as_flags, split_host_port
from supernode.directory.accounts import Accounts
from supernode.directory.presence import Admission, Presence, Replica
from supernode.directory.watch import WatchHub
from supernode.metrics import Metrics
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.relay import RelayHub, RelayLimits
from supernode.rendezvous.signaling import Switchboard
from supernode.rendezvous.stun import start_stun
from supernode.rendezvous.tickets import TicketAuthority
from supernode.rpc.directory import DirectoryApi
from supernode.rpc.handlers import ServiceHandlers, register_services
from supernode.rpc.rendezvous import RendezvousApi
from supernode.rpc.search import SearchApi
from supernode.rpc.watch import WatchApi
from supernode.sessions import SECRET_BYTES, SessionAuthority
from supernode.store import Store
from supernode.workers.feed import ChangeFeed
from supernode.workers.primary import (
    REPLICATION_SERVICE,
    WorkerPool,
    private_address,
    replication_handlers,
)

log = logging.getLogger("supernode")

TOKEN_SECRET = "token_secret"
# Every public service, as descriptors: what workers forward and reflection lists.
PUBLIC_SERVICES = [
    service
    for module in (directory_pb2, search_pb2, rendezvous_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
]


# How many pings closer together than the minimum interval a connection may send before
# GOAWAY too_many_pings (gRPC's default, set explicitly so the whole policy reads here).
MAX_PING_STRIKES = 2


def server_options(config: Config, *, reuse_port: bool) -> list[tuple[str, int]]:
    """Options of every gRPC server of a node: the public port, each worker's copy of it,
    and the primary's private socket for workers, so all enforce one keepalive policy."""
    return [
        ("grpc.max_receive_message_length", config.limits.max_message_bytes),
        ("grpc.max_send_message_length", 64 << 20),
        # Off for one process (a second node on the same port must fail, not share it);
        # on with workers, which all bind the primary's port.
        ("grpc.so_reuseport", int(reuse_port)),
        *keepalive_options(config.server),
    ]


def keepalive_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """The server's side of HTTP/2 keepalive (see ServerSettings and README "Keepalive").

    Client pings are accepted every ``keepalive_min_ping_interval_seconds``, also on
    connections without calls and without data (idle Watch and Listen streams send none);
    the server pings each client every ``keepalive_time_seconds`` itself, to drop the ones
    that vanished.
    """
    return [
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS (default 5 minutes).
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.keepalive_min_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        # Without it, pings on a connection with no call in flight must be 2 hours apart.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout_seconds)),
        # The server's own pings, too, go out on streams that carry no data.
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Supernode:
    """One running supernode. Not reusable after :meth:`stop`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.grpc_port = 0
        self.node_name = config.server.node_name
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._store: Store | None = None
        self._health = health.aio.HealthServicer()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.presence: Presence | None = None
        self.hub: WatchHub | None = None
        self.switchboard: Switchboard | None = None
        self.relay: RelayHub | None = None
        self._stun: asyncio.DatagramTransport | None = None
        self.stun_port = 0
        self._private: grpc.aio.Server | None = None
        self._workers: WorkerPool | None = None

    async def start(self) -> None:
        settings = self.config.server
        store = Store(
            settings.data_dir,
            sync_writes=settings.sync_writes,
            block_cache_bytes=settings.block_cache_mib << 20,
            view_cache_bytes=settings.view_cache_mib << 20,
        )
        self._store = store
        with_workers = settings.workers > 1
        server = grpc.aio.server(options=server_options(self.config, reuse_port=with_workers))
        host, port = split_host_port(settings.listen, "listen")
        self.grpc_port = server.add_insecure_port(f"{host}:{port}")
        if self.grpc_port == 0:
            raise OSError(f"listen: cannot bind {settings.listen}")
        self.node_name = settings.node_name or f"{host}:{self.grpc_port}"
        accounts, presence = self._build_directory(store)
        apis = list(self._build_apis(store, accounts, presence).values())
        registered = register_services(server, *apis)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*registered, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self._server = server
        await server.start()
        if with_workers:
            await self._start_workers(store, apis, f"{host}:{self.grpc_port}")
        metrics_host, metrics_port = split_host_port(settings.metrics_listen, "metrics_listen")
        self.metrics_port = self.metrics.serve_http(metrics_host, metrics_port)
        stun_address = ""
        if settings.stun_listen:
            stun_host, stun_port = split_host_port(settings.stun_listen, "stun_listen")
            self._stun, self.stun_port = await start_stun(
                stun_host, stun_port, self.metrics.count_stun
            )
            stun_address = f"{stun_host}:{self.stun_port}"
        for service in (*registered, ""):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._sweeper = asyncio.create_task(self._sweep_forever(presence), name="lease-sweeper")
        log.info(
            "supernode ready %s",
            json.dumps(
                {
                    "pid": os.getpid(),
                    "grpc": f"{host}:{self.grpc_port}",
                    "metrics": f"{metrics_host}:{self.metrics_port}",
                    "stun": stun_address,
                    "data_dir": str(settings.data_dir),
                    "node": self.node_name,
                    "accounts": accounts.count(),
                    "devices_online": presence.online,
                    "workers": [] if self._workers is None else list(self._workers.ready.values()),
                }
            ),
        )

    async def _start_workers(self, store: Store, apis: list[ServiceHandlers], listen: str) -> None:
        """A private server (replication feed, and every public method for forwarded
        calls) and the worker processes that use it."""
        feed = ChangeFeed(store.sequence())
        store.on_commit = feed.publish
        private = grpc.aio.server(options=server_options(self.config, reuse_port=False))
        address = private_address()
        if private.add_insecure_port(address) == 0:
            raise OSError(f"cannot bind the workers' private socket {address}")
        register_services(private, *apis, {REPLICATION_SERVICE: replication_handlers(feed, store)})
        await private.start()
        self._private = private
        self._workers = WorkerPool(
            self.config.server.workers,
            as_flags(self.config),
            address,
            listen,
            on_restart=self.metrics.worker_restarts.inc,
        )
        await self._workers.start()

    def _build_directory(self, store: Store) -> tuple[Accounts, Presence]:
        config = self.config
        accounts = Accounts(
            store, limits=config.limits, policy=config.lease, clock_ms=wall_clock_ms
        )
        self.hub = WatchHub(
            clock=time.monotonic,
            history=config.limits.watch_history_events,
            queue_limit=config.limits.watch_queue_events,
            max_handles=config.limits.max_watch_handles,
            max_watches_per_session=config.limits.max_watches_per_session,
        )
        presence = Presence(
            Admission(
                accounts,
                policy=config.lease,
                limits=config.limits,
                clock_ms=wall_clock_ms,
                node_name=self.node_name,
            ),
            Replica(
                store, accounts, policy=config.lease, limits=config.limits, clock_ms=wall_clock_ms
            ),
            observers=[self.metrics, self.hub],
        )
        self.presence = presence
        hub = self.hub
        self.metrics.watch_gauges(
            accounts=accounts.count,
            devices_online=lambda: presence.online,
            store_size=lambda: 0 if store.closed else store.size_bytes(),
            watchers=lambda: hub.watchers,
        )
        return accounts, presence

    def _build_apis(
        self, store: Store, accounts: Accounts, presence: Presence
    ) -> dict[str, ServiceHandlers]:
        config = self.config
        secret = store.get_meta(TOKEN_SECRET)
        if secret is None:
            secret = secrets.token_bytes(SECRET_BYTES)
            store.put_meta(TOKEN_SECRET, secret)
        sessions = SessionAuthority(
            secret, clock_ms=wall_clock_ms, token_ttl_seconds=config.server.token_ttl_seconds
        )
        buckets = TokenBuckets(
            rate=config.limits.search_rate_per_second,
            burst=config.limits.search_burst,
            clock=time.monotonic,
        )
        assert self.hub is not None
        return {
            "directory": DirectoryApi(accounts, presence, sessions, self.metrics).method_handlers(),
            "watch": WatchApi(self.hub, presence, sessions, self.metrics).method_handlers(),
            "search": SearchApi(accounts, sessions, buckets).method_handlers(self.metrics),
            "rendezvous": self._build_rendezvous(store, secret, sessions),
        }

    def _build_rendezvous(
        self, store: Store, secret: bytes, sessions: SessionAuthority
    ) -> ServiceHandlers:
        limits = self.config.limits
        tickets = TicketAuthority(
            secret, clock_ms=wall_clock_ms, ttl_ms=limits.relay_ticket_ttl_seconds * 1000
        )

        def is_live(handle: str, device_id: str) -> bool:
            slot = store.device_slot(handle, device_id)
            return slot is not None and slot.live and slot.expires_at_ms > wall_clock_ms()

        self.switchboard = Switchboard(
            tickets,
            TokenBuckets(
                rate=limits.offer_rate_per_second, burst=limits.offer_burst, clock=time.monotonic
            ),
            is_live=is_live,
            clock_ms=wall_clock_ms,
            answer_timeout_ms=limits.answer_timeout_ms,
        )
        self.relay = RelayHub(
            tickets,
            RelayLimits(
                max_bytes=limits.relay_max_bytes,
                max_bytes_per_second=limits.relay_max_bytes_per_second,
                idle_timeout_seconds=limits.relay_idle_timeout_seconds,
            ),
            clock=time.monotonic,
            count_bytes=self.metrics.relay_bytes.inc,
        )
        switchboard, relay = self.switchboard, self.relay
        self.metrics.listeners.set_function(lambda: switchboard.listening)
        self.metrics.relay_sessions.set_function(lambda: relay.sessions)
        return RendezvousApi(
            self.switchboard, self.relay, sessions, self.metrics, wall_clock_ms
        ).method_handlers()

    async def _sweep_forever(self, presence: Presence) -> None:
        interval = self.config.server.sweep_interval_seconds
        while True:
            try:
                if self.relay is not None:
                    self.relay.sweep(wall_clock_ms())
                result = presence.sweep()
                if result.expired or result.purged:
                    log.debug(
                        "swept %d expired leases, purged %d tombstones",
                        result.expired,
                        result.purged,
                    )
                    if result.expired + result.purged >= 10_000:
                        await asyncio.sleep(0)  # more are due: keep going, but let calls in
                        continue
            except Exception:
                log.exception("lease sweep failed; retrying")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Drain and close. Safe to call more than once."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("supernode stopping: draining in-flight calls")
        await self._health.enter_graceful_shutdown()
        if self.hub is not None:
            self.hub.close()  # watch streams end with UNAVAILABLE instead of holding the drain
        if self.switchboard is not None:
            self.switchboard.close()
        if self.relay is not None:
            self.relay.close()
        if self._workers is not None:
            await self._workers.stop()  # they drain first: their forwarded calls end here
        if self._server is not None:
            await self._server.stop(self.config.server.shutdown_grace_seconds)
        if self._private is not None:
            await self._private.stop(1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.metrics.stop_http()
        if self._stun is not None:
            self._stun.close()
        if self._store is not None:
            self._store.close()
        log.info("supernode stopped cleanly")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    node = Supernode(config)
    await node.start()
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def request_stop(signum: signal.Signals) -> None:
        log.info("got %s", signum.name)
        if not stopping.done():
            stopping.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    await stopping
    await node.stop()
