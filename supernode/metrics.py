"""Prometheus metrics of one supernode, on their own registry (no global state).

The per-call cost matters on the lookup path, so label children are bound once per method
and status code and kept in plain dicts; a call then costs one dict hit, one counter
increment and one histogram observation.
"""

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import Counter as _CounterT
from prometheus_client.metrics import Histogram as _HistogramT

from supernode.directory.presence import Change

# Lookups take tens of microseconds to a few milliseconds; registrations up to ~10 ms.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
)  # fmt: skip


class RpcMetrics:
    """Bound counters and histograms of one RPC method, one child per status code."""

    def __init__(self, requests: Counter, latency: Histogram, method: str) -> None:
        self._requests = requests
        self._latency = latency
        self._method = method
        self._children: dict[grpc.StatusCode, tuple[_CounterT, _HistogramT]] = {}
        self.ok = self._bind(grpc.StatusCode.OK)

    def _bind(self, code: grpc.StatusCode) -> tuple[_CounterT, _HistogramT]:
        children = self._children.get(code)
        if children is None:
            children = (
                self._requests.labels(self._method, code.name),
                self._latency.labels(self._method, code.name),
            )
            self._children[code] = children
        return children

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        counter, histogram = self.ok if code is grpc.StatusCode.OK else self._bind(code)
        counter.inc()
        histogram.observe(seconds)


class Metrics:
    """Every metric a supernode exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rpc_requests = Counter(
            "supernode_rpc_requests",
            "gRPC calls handled, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._rpc_latency = Histogram(
            "supernode_rpc_duration_seconds",
            "Time spent handling a gRPC call inside the servicer, by method and status code.",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accounts = Gauge(
            "supernode_accounts", "Accounts registered on this node.", registry=self.registry
        )
        self.devices_online = Gauge(
            "supernode_devices_online",
            "Device records with a live lease (until the sweeper removes them).",
            registry=self.registry,
        )
        self.store_size = Gauge(
            "supernode_store_size_bytes",
            "RocksDB SST files plus memtables, all column families.",
            registry=self.registry,
        )
        self.lease_expirations = Counter(
            "supernode_lease_expirations",
            "Device leases that ended without renewal and were swept.",
            registry=self.registry,
        )
        self._device_changes = Counter(
            "supernode_device_changes",
            "Device presence changes, by kind.",
            ["change"],
            registry=self.registry,
        )
        self.watchers = Gauge(
            "supernode_watch_subscribers", "Open presence watch streams.", registry=self.registry
        )
        self.notification_delay = Histogram(
            "supernode_watch_notification_delay_seconds",
            "Time from a committed presence change to its event being written to a watcher.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.listeners = Gauge(
            "supernode_rendezvous_listeners",
            "Devices with an open Listen stream (reachable for offers).",
            registry=self.registry,
        )
        self.relay_sessions = Gauge(
            "supernode_relay_sessions",
            "Relay sessions with both sides joined.",
            registry=self.registry,
        )
        self.relay_bytes = Counter(
            "supernode_relay_bytes",
            "Datagram bytes forwarded by the relay.",
            registry=self.registry,
        )
        self._stun = Counter(
            "supernode_stun_requests",
            "STUN datagrams received, by outcome (answered, dropped).",
            ["outcome"],
            registry=self.registry,
        )
        self._stun_children = {o: self._stun.labels(o) for o in ("answered", "dropped")}
        self._change_children = {c: self._device_changes.labels(c.value) for c in Change}
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def rpc(self, method: str) -> RpcMetrics:
        return RpcMetrics(self._rpc_requests, self._rpc_latency, method)

    def watch_gauges(
        self,
        *,
        accounts: Callable[[], float],
        devices_online: Callable[[], float],
        store_size: Callable[[], float],
        watchers: Callable[[], float],
    ) -> None:
        """Read these values at scrape time rather than keeping copies in step."""
        self.watchers.set_function(watchers)
        self.accounts.set_function(accounts)
        self.devices_online.set_function(devices_online)
        self.store_size.set_function(store_size)

    def device_changed(
        self, handle: str, device_id: str, change: Change, device: bytes | None
    ) -> None:
        self._change_children[change].inc()
        if change is Change.EXPIRED:
            self.lease_expirations.inc()

    def count_stun(self, outcome: str) -> None:
        self._stun_children[outcome].inc()

    def serve_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` from a daemon thread; returns the bound port."""
        self._http, self._http_thread = start_http_server(port, host, registry=self.registry)
        return int(self._http.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
