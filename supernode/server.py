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
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2

from supernode import __version__, transport
from supernode.config import Config, as_flags, split_host_port
from supernode.directory.accounts import Accounts
from supernode.directory.ports import AccountRegistry
from supernode.directory.presence import Presence, PresenceObserver
from supernode.directory.watch import WatchHub
from supernode.log_summary import CounterDeltas, Summary, log_due
from supernode.loop_lag import sample_loop_lag
from supernode.metrics import Metrics
from supernode.node import (
    Directory,
    add_standard_services,
    build_directory,
    build_rate_gates,
    build_shedding,
    local_token_secret,
    mark_serving,
    open_store,
    wall_clock_ms,
)
from supernode.ops.admin import AdminServer, start_admin_server
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.relay import RelayHub, RelayLimits
from supernode.rendezvous.signaling import Switchboard
from supernode.rendezvous.stun import source_limiter, start_stun
from supernode.rendezvous.tickets import Endpoint, TicketAuthority
from supernode.revocations import Revocations, RevocationSink, StoredRevocations
from supernode.rpc.directory import DirectoryApi
from supernode.rpc.handlers import ServiceHandlers, merge_services, register_services
from supernode.rpc.rendezvous import RendezvousApi
from supernode.rpc.search import SearchApi
from supernode.rpc.watch import WatchApi
from supernode.sessions import SessionAuthority
from supernode.startup import binding, preflight, starting, store_failure
from supernode.store import Store, StoreError
from supernode.tls import NodeTls, node_tls
from supernode.workers.feed import ChangeFeed
from supernode.workers.gate import PrivateGate, new_secret
from supernode.workers.primary import (
    REPLICATION_SERVICE,
    WorkerPool,
    private_address,
    replication_handlers,
)

if TYPE_CHECKING:  # the cluster package is imported only by nodes that join one
    from client_sdk.protocol.v1.rendezvous_pb2 import ConnectResponse
    from supernode.cluster.member import ClusterMember
    from supernode.cluster.routing import ClusterPresence
    from supernode.internal.v1 import cluster_pb2

log = logging.getLogger("supernode")

_CLUSTER_STOP_S = 10.0
# The gRPC health service name that reports the cluster's coordination store (etcd).
COORDINATION_HEALTH = "supernode.cluster.etcd"


class Supernode:
    """One running supernode. Not reusable after :meth:`stop`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        # Load shedding of the public calls this process serves (the internal cluster
        # service is never gated: supernode.overload).
        self.shedding = build_shedding(config, self.metrics)
        # Rate limits per account and per source (supernode.rate); in a cluster each node
        # enforces 1/N of them (the sweeper keeps N current).
        self.rate_gates = build_rate_gates(config, self.metrics)
        limiter = self.rate_gates.limiter
        self.metrics.rate_share.set_function(lambda: limiter.share)
        self._loop_lag: asyncio.Task[None] | None = None
        self.grpc_port = 0
        self.node_name = config.server.node_name
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._store: Store | None = None
        self._health: health.aio.HealthServicer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.presence: Presence | None = None
        self.hub: WatchHub | None = None
        self.switchboard: Switchboard | None = None
        self.relay: RelayHub | None = None
        self._stun: asyncio.DatagramTransport | None = None
        self.stun_port = 0
        self._private: grpc.aio.Server | None = None
        self.cluster: ClusterMember | None = None
        self.routed: ClusterPresence | None = None
        self.rendezvous: RendezvousApi | None = None
        self._coordination: asyncio.Task[None] | None = None
        self._workers: WorkerPool | None = None
        self.revocations = Revocations()  # what token checks consult (kept current below)
        self._revoker: RevocationSink | None = None
        self._stored_revocations: StoredRevocations | None = None
        # The node's certificate and the cluster CA; None: plaintext, as configured.
        self.tls: NodeTls | None = None
        self.peer_address = ""
        self._directory: Directory | None = None
        self._admin: AdminServer | None = None  # status and backup (supernode.ops.admin)
        # What the sweeper logs once a minute at most (supernode.log_summary).
        self._swept = Summary(time.monotonic)
        self._refused = Summary(time.monotonic)
        self._refusal_deltas = CounterDeltas()

    async def start(self) -> None:
        settings = self.config.server
        self.tls = node_tls(self.config)  # ConfigError: refused before anything is opened
        if self.tls is None:
            log.warning(
                "serving PLAINTEXT on %s (tls.plaintext): tokens and lookups are readable "
                "on the path; configure [tls] cert_file and key_file outside development",
                settings.listen,
            )
        preflight(self.config)  # every port and the data directory, before anything opens
        try:
            store = open_store(self.config)
        except StoreError as exc:
            raise store_failure(settings.data_dir, exc) from exc
        self._store = store
        with_workers = settings.workers > 1
        server = transport.new_server(self.config, reuse_port=with_workers)
        host, port = split_host_port(settings.listen, "listen")
        with binding("server.listen", settings.listen):
            self.grpc_port = transport.bind_public(server, f"{host}:{port}", "listen", self.tls)
        self.node_name = settings.node_name or f"{host}:{self.grpc_port}"
        secret, registry = local_token_secret(store), None
        if not self.config.cluster.enabled:
            stored = StoredRevocations(store, self.revocations, wall_clock_ms)
            stored.load()
            self._revoker = self._stored_revocations = stored
        else:
            from supernode.cluster.member import ClusterMember

            self.node_name = self.config.cluster.advertise or self.node_name
            if self.tls is not None:
                self.peer_address = self._bind_peer_port(server, host, self.tls)
            self.cluster = ClusterMember(
                self.config,
                store,
                name=self.node_name,
                revocations=self.revocations,
                tls=self.tls,
                peer_address=self.peer_address,
            )
            with starting("cluster.etcd_endpoints", "start etcd there, or name its members"):
                secret = await self.cluster.open()
            registry = self.cluster.registry
            self._revoker = self.cluster.revoker
        directory = self._directory = self._build_directory(store, secret, registry)
        apis = list(self._build_apis(store, directory).values())
        registered = register_services(server, *apis)
        self._health = add_standard_services(server, registered)
        self._server = server
        await server.start()
        if self.cluster is not None:
            assert self.routed is not None and self.hub is not None
            await self.cluster.start(self.routed, self.routed.peers, self.hub)
            from supernode.cluster.metrics import ClusterCollector

            self.metrics.registry.register(ClusterCollector(self.cluster, self.routed))
        if with_workers:
            with starting("server.workers"):
                await self._start_workers(store, apis, f"{host}:{self.grpc_port}")
        metrics_host, metrics_port = split_host_port(settings.metrics_listen, "metrics_listen")
        with binding("server.metrics_listen", settings.metrics_listen):
            self.metrics_port = self.metrics.serve_http(
                metrics_host,
                metrics_port,
                None if self.cluster is None else self._cluster_readiness,
            )
        stun_address = ""
        if settings.stun_listen:
            stun_host, stun_port = split_host_port(settings.stun_listen, "stun_listen")
            with binding("server.stun_listen", settings.stun_listen):
                self._stun, self.stun_port = await start_stun(
                    stun_host,
                    stun_port,
                    self.metrics.count_stun,
                    source_limiter(settings.stun_rate_per_second, settings.stun_burst),
                )
            stun_address = f"{stun_host}:{self.stun_port}"
        await mark_serving(self._health, registered)
        self.metrics.not_ready = None
        if self.cluster is not None:
            self._coordination = asyncio.create_task(
                self._report_coordination(self.cluster, self._health), name="etcd health"
            )
        presence = directory.presence
        self._sweeper = asyncio.create_task(self._sweep_forever(presence), name="lease-sweeper")
        self._loop_lag = asyncio.create_task(
            sample_loop_lag(self.shedding, self.metrics.loop_lag_probes.observe), name="loop lag"
        )
        self._admin = await start_admin_server(self)
        ready = {
            "version": __version__,
            "pid": os.getpid(),
            "grpc": f"{host}:{self.grpc_port}",
            "metrics": f"{metrics_host}:{self.metrics_port}",
            "stun": stun_address,
            "data_dir": str(settings.data_dir),
            "node": self.node_name,
            "tls": self.tls is not None,
            "peer": self.peer_address,
            "accounts": directory.accounts.count(),
            "devices_online": presence.online,
            "workers": [] if self._workers is None else list(self._workers.ready.values()),
            "cluster": None
            if self.cluster is None
            else {"node": self.node_name, "etcd": self.config.cluster.endpoints},
        }
        # The JSON after "supernode ready" is what scripts and tests read; in JSON log
        # lines the same values are fields of their own.
        log.info("supernode ready %s", json.dumps(ready), extra=ready)

    def _cluster_readiness(self) -> str | None:
        """/readyz of a cluster member: not ready while its own member key (its etcd
        lease) is missing from the view, since peers then route nothing to it."""
        if self.cluster is None or self.node_name in self.cluster.view.members:
            return None
        return "not a live member of the cluster (no member key in etcd)"

    @property
    def store(self) -> Store | None:
        return self._store

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def account_count(self) -> int:
        return 0 if self._directory is None else self._directory.accounts.count()

    def worker_info(self) -> list[dict[str, Any]]:
        """What each worker reported when ready (pid, metrics address); empty without."""
        return [] if self._workers is None else list(self._workers.ready.values())

    def _bind_peer_port(self, server: grpc.aio.Server, listen_host: str, tls: NodeTls) -> str:
        """Bind the mutual-TLS peer port; the address other nodes are to call it at (the
        advertised host, the bound port)."""
        peer_listen = self.config.cluster.peer_listen or f"{listen_host}:0"
        peer_host, peer_port = split_host_port(peer_listen, "cluster.peer_listen")
        with binding("cluster.peer_listen", peer_listen):
            bound = transport.bind_peer(server, f"{peer_host}:{peer_port}", tls)
        advertised_host, _ = split_host_port(self.node_name, "cluster.advertise")
        if ":" in advertised_host:
            advertised_host = f"[{advertised_host}]"
        return f"{advertised_host}:{bound}"

    async def _start_workers(self, store: Store, apis: list[ServiceHandlers], listen: str) -> None:
        """A private server (replication feed, and every public method for forwarded
        calls) and the worker processes that use it."""
        feed = ChangeFeed(store.sequence())
        store.on_commit = feed.publish
        secret = new_secret()  # per start: handed to each worker on its stdin
        private = transport.new_server(self.config, reuse_port=False)
        address = private_address()
        with binding("server.workers", address):
            transport.bind(private, address, "the workers' private socket")
        services = merge_services(*apis, {REPLICATION_SERVICE: replication_handlers(feed, store)})
        gate = PrivateGate(services, secret, self.metrics.private_calls_refused.inc)
        private.add_generic_rpc_handlers((gate,))
        await private.start()
        self._private = private
        self._workers = WorkerPool(
            self.config.server.workers,
            as_flags(self.config),
            address,
            listen,
            secret,
            on_restart=self.metrics.worker_restarts.inc,
        )
        await self._workers.start()

    def _build_directory(
        self, store: Store, secret: bytes, registry: AccountRegistry | None
    ) -> Directory:
        config = self.config
        self.hub = WatchHub(
            clock=time.monotonic,
            history=config.limits.watch_history_events,
            queue_limit=config.limits.watch_queue_events,
            history_bytes=config.limits.watch_history_bytes,
            queue_bytes=config.limits.watch_queue_bytes,
            node_queue_bytes=config.limits.watch_queue_node_bytes,
            stall_seconds=config.limits.watch_stall_seconds,
            max_handles=config.limits.max_watch_handles,
            max_watches_per_session=config.limits.max_watches_per_session,
        )
        store.on_account_state = self.hub.account_changed
        observers: list[PresenceObserver] = [self.metrics, self.hub]
        if self.cluster is not None:
            observers.append(self.cluster.feed_hub)
        directory = build_directory(
            config,
            store,
            node_name=self.node_name,
            secret=secret,
            registry=registry,
            observers=observers,
            revocations=self.revocations,
        )
        self.presence = presence = directory.presence
        hub = self.hub
        self.metrics.watch_gauges(
            accounts=directory.accounts.count,
            devices_online=lambda: presence.online,
            store_size=lambda: 0 if store.closed else store.size_bytes(),
            watchers=lambda: hub.watchers,
        )
        return directory

    def _build_apis(self, store: Store, directory: Directory) -> dict[str, ServiceHandlers]:
        config = self.config
        accounts, presence, sessions = directory.accounts, directory.presence, directory.sessions
        buckets = TokenBuckets(
            rate=config.limits.search_rate_per_second,
            burst=config.limits.search_burst,
            clock=time.monotonic,
        )
        assert self.hub is not None
        served: Presence | ClusterPresence = presence
        if self.cluster is not None:
            served = self._routed(presence, accounts, sessions)
        shedding = self.shedding
        apis = {
            "search": SearchApi(
                accounts, sessions, buckets, self.rate_gates, privacy=directory.privacy
            ).method_handlers(self.metrics, shedding),
            "rendezvous": self._build_rendezvous(store, directory, sessions),
        }
        if self.cluster is not None:
            from supernode.cluster.service import ClusterApi

            apis["cluster"] = ClusterApi(
                presence,
                sessions,
                self.metrics,
                self.cluster.feed_hub,
                self._deliver_offer,
                self.cluster.placement,
                store.device_page,
                self.config.cluster.stream_share,
                mutual_tls=self.tls is not None,
            ).method_handlers()
        ring = None
        if self.cluster is not None:
            from supernode.cluster.ring_answer import RingAnswer

            ring = RingAnswer(self.cluster.view)
        apis["directory"] = DirectoryApi(
            accounts,
            served,
            sessions,
            self.metrics,
            shedding,
            ring,
            revoker=self._revoker,
            gates=self.rate_gates,
            privacy=directory.privacy,
        ).method_handlers()
        apis["watch"] = WatchApi(
            self.hub,
            served,
            sessions,
            self.metrics,
            directory.privacy,
            shedding,
            self.rate_gates,
        ).method_handlers()
        return apis

    def _routed(
        self, presence: Presence, accounts: Accounts, sessions: SessionAuthority
    ) -> ClusterPresence:
        from supernode.cluster.peers import Peers
        from supernode.cluster.routing import ClusterPresence

        assert self.cluster is not None
        self.routed = ClusterPresence(
            presence,
            accounts,
            self.cluster.view,
            Peers(self.node_name, sessions, self.tls),
            name=self.node_name,
            clock_ms=wall_clock_ms,
        )
        return self.routed

    async def _deliver_offer(self, request: cluster_pb2.DeliverOfferRequest) -> ConnectResponse:
        """An offer another node admitted, for a callee listening here."""
        assert self.rendezvous is not None
        return await self.rendezvous.deliver(
            Endpoint(request.caller_handle, request.caller_device_id),
            Endpoint(request.callee_handle, request.callee_device_id),
            request.payload,
        )

    def _build_rendezvous(
        self, store: Store, directory: Directory, sessions: SessionAuthority
    ) -> ServiceHandlers:
        limits = self.config.limits
        tickets = TicketAuthority(
            directory.secret, clock_ms=wall_clock_ms, ttl_ms=limits.relay_ticket_ttl_seconds * 1000
        )

        assert self.presence is not None
        local_live = self.presence.replica.is_live
        routed = self.routed

        def is_live(handle: str, device_id: str) -> bool:
            if routed is None:
                return local_live(handle, device_id, wall_clock_ms())
            return routed.is_live(handle, device_id, wall_clock_ms())

        self.switchboard = Switchboard(
            tickets,
            TokenBuckets(
                rate=limits.offer_rate_per_second, burst=limits.offer_burst, clock=time.monotonic
            ),
            is_live=is_live,
            clock_ms=wall_clock_ms,
            answer_timeout_ms=limits.answer_timeout_ms,
            max_queued_bytes=limits.listen_queue_bytes,
            max_node_queued_bytes=limits.listen_queue_node_bytes,
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
        router = None
        if self.routed is not None:
            from supernode.cluster.offers import ClusterOffers

            router = ClusterOffers(
                self.routed,
                self.routed.peers,
                self.routed.view,
                answer_timeout_ms=limits.answer_timeout_ms,
            )
        self.rendezvous = RendezvousApi(
            self.switchboard,
            self.relay,
            sessions,
            self.metrics,
            wall_clock_ms,
            router,
            self.shedding,
            self.rate_gates,
            privacy=directory.privacy,
        )
        return self.rendezvous.method_handlers()

    async def _report_coordination(
        self, cluster: ClusterMember, servicer: health.aio.HealthServicer
    ) -> None:
        """Health of ``COORDINATION_HEALTH``: NOT_SERVING while etcd is unreachable. The
        node itself stays SERVING: lookups, renewals, watches and rendezvous go on."""
        reported: bool | None = None
        while True:
            reachable = cluster.etcd_reachable
            if reachable != reported:
                status = health_pb2.HealthCheckResponse
                await servicer.set(
                    COORDINATION_HEALTH, status.SERVING if reachable else status.NOT_SERVING
                )
                if reported is not None:
                    log.warning("etcd %s", "reachable again" if reachable else "unreachable")
                reported = reachable
            await asyncio.sleep(0.5)

    async def _sweep_forever(self, presence: Presence) -> None:
        interval = self.config.server.sweep_interval_seconds
        while True:
            try:
                if self.cluster is not None:
                    self.rate_gates.limiter.share_among(len(self.cluster.view.members))
                if self.relay is not None:
                    self.relay.sweep(wall_clock_ms())
                if self._stored_revocations is not None:
                    self._stored_revocations.sweep()
                if self.hub is not None:
                    self.hub.sweep()  # watchers stuck behind a client that stopped reading
                result = presence.sweep()
                self._swept.add({"expired": result.expired, "purged": result.purged})
                log_due(log, self._swept, "lease sweeps: leases expired, tombstones purged")
                self._refused.add(self._refusal_deltas(self.metrics.refusal_totals()))
                log_due(log, self._refused, "calls refused")
                if result.expired + result.purged >= 10_000:
                    await asyncio.sleep(0)  # more are due: keep going, but let calls in
                    continue
            except Exception:
                log.exception("lease sweep failed; retrying")
            await asyncio.sleep(interval)

    async def stop(self, *, quietly: bool = False) -> None:
        """Drain and close. Safe to call more than once, and after a failed start
        (``quietly``: it never served, so there is nothing to announce)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.metrics.not_ready = "draining"
        if not quietly:
            log.info(
                "supernode stopping: draining in-flight calls (up to %.0f s)",
                self.config.server.shutdown_grace_seconds,
            )
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._coordination is not None:
            self._coordination.cancel()  # etcd is about to be let go: not an outage to report
        if self.hub is not None:
            self.hub.close()  # watch streams end with UNAVAILABLE instead of holding the drain
        if self.cluster is not None:
            self.cluster.feed_hub.close()
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
        if self._admin is not None:
            await self._admin.stop()
        if self.cluster is not None:
            # After the drain: forwarded calls may still need peers. Bounded: leaving the
            # cluster (revoking the lease) must not hold the rest of the stop.
            try:
                async with asyncio.timeout(_CLUSTER_STOP_S):
                    await self.cluster.stop()
            except TimeoutError:
                log.warning("leaving the cluster took over %.0f s; going on", _CLUSTER_STOP_S)
        for task in (self._sweeper, self._loop_lag):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.metrics.stop_http()
        if self._stun is not None:
            self._stun.close()
        if self._store is not None:
            self._store.close()
        if not quietly:
            log.info("supernode stopped cleanly")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


# Beyond the drain grace, how long a stop may take before the process exits anyway.
_STUCK_MARGIN_S = 20.0


def _exit_if_stuck(after_s: float) -> None:
    """A stop must end the process: an operator's SIGTERM that leaves it running is a hang
    they cannot see into. The store is crash-safe (WAL), so exiting without its clean close
    loses nothing acknowledged; the log says it happened."""

    def exit_now() -> None:
        log.error("shutdown did not finish within %.0f s; exiting now", after_s)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(after_s, exit_now)
    timer.daemon = True
    timer.start()


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    node = Supernode(config)
    try:
        await node.start()
    except BaseException:
        await node.stop(quietly=True)  # what did open is closed: no half-started server left behind
        raise
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def request_stop(signum: signal.Signals) -> None:
        log.info("got %s", signum.name)
        if not stopping.done():
            stopping.set_result(None)
            _exit_if_stuck(config.server.shutdown_grace_seconds + _STUCK_MARGIN_S)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    await stopping
    await node.stop()
