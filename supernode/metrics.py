"""Prometheus metrics of one supernode, on their own registry (no global state).

The per-call cost matters on the lookup path, so RPC counts and latencies are plain Python
integers (one bisect and two additions per call, no locks) that a collector turns into
Prometheus counter and histogram families at scrape time. Measured inside a loaded server,
prometheus-client's locked ``Counter.inc`` plus ``Histogram.observe`` cost several
microseconds per call; this is a fraction of one.
"""

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import partial
from itertools import accumulate
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from supernode.directory.presence import Change, DeviceChanged
from supernode.overload import Lane, Shedding

# Lookups take tens of microseconds to a few milliseconds; registrations up to ~10 ms.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
)  # fmt: skip


def _in_flight(lane: Lane) -> float:
    return lane.in_flight


class RpcMetrics:
    """Counts and latency buckets of one RPC method, one row per status code.

    Only the event-loop thread writes; the scrape thread reads. A scrape that races a
    call may see the sum one observation ahead of the buckets, which Prometheus tolerates.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.rows: dict[grpc.StatusCode, list[float]] = {}  # code -> [sum, bucket counts...]
        self._ok = self._row(grpc.StatusCode.OK)

    def _row(self, code: grpc.StatusCode) -> list[float]:
        row = self.rows.get(code)
        if row is None:
            row = [0.0] * (len(_LATENCY_BUCKETS) + 2)  # sum, one per bound, +Inf
            self.rows[code] = row
        return row

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        row = self._ok if code is grpc.StatusCode.OK else self._row(code)
        row[0] += seconds
        row[1 + bisect_left(_LATENCY_BUCKETS, seconds)] += 1


class RpcCollector(Collector):
    """Exports every :class:`RpcMetrics` as ``supernode_rpc_requests_total`` and
    ``supernode_rpc_duration_seconds``, labelled by method and status code."""

    def __init__(self) -> None:
        self.methods: list[RpcMetrics] = []

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "supernode_rpc_requests",
            "gRPC calls handled, by method and status code.",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "supernode_rpc_duration_seconds",
            "Time spent handling a gRPC call inside the servicer, by method and status code.",
            labels=["method", "code"],
        )
        bounds = [*(repr(b) for b in _LATENCY_BUCKETS), "+Inf"]
        for metrics in self.methods:
            for code, row in list(metrics.rows.items()):
                counts = list(accumulate(int(n) for n in row[1:]))
                labels = [metrics.method, code.name]
                requests.add_metric(labels, counts[-1])
                latency.add_metric(labels, list(zip(bounds, counts, strict=True)), row[0])
        yield requests
        yield latency


class Metrics:
    """Every metric a supernode exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rpc = RpcCollector()
        self.registry.register(self._rpc)
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
        self.worker_restarts = Counter(
            "supernode_worker_restarts",
            "Worker processes that died and were started again (supernode.workers).",
            registry=self.registry,
        )
        self.sessions_revoked = Counter(
            "supernode_sessions_revoked",
            "Revocations made here, by kind: logout (one session) or account (RevokeSessions).",
            ["kind"],
            registry=self.registry,
        )
        self.private_calls_refused = Counter(
            "supernode_private_calls_refused",
            "Calls to the workers' private socket without this start's secret (not a worker).",
            registry=self.registry,
        )
        self.relay_bytes = Counter(
            "supernode_relay_bytes",
            "Datagram bytes forwarded by the relay.",
            registry=self.registry,
        )
        self._stun = Counter(
            "supernode_stun_requests",
            "STUN datagrams received, by outcome (answered, dropped, rate_limited: the source "
            "address was over stun_rate_per_second and got no answer).",
            ["outcome"],
            registry=self.registry,
        )
        self._requests_shed = Counter(
            "supernode_requests_shed",
            "Calls refused with RESOURCE_EXHAUSTED and a retry hint to protect the node "
            "(supernode.overload), by method.",
            ["method"],
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "supernode_in_flight",
            "Gated calls inside their handler on this process, by class (supernode.overload).",
            ["call_class"],
            registry=self.registry,
        )
        self._in_flight_total = Gauge(
            "supernode_in_flight_total",
            "Gated calls inside their handler on this process, all classes.",
            registry=self.registry,
        )
        self._loop_lag = Gauge(
            "supernode_event_loop_lag_seconds",
            "How late the latest event-loop lag probe fired (supernode.loop_lag).",
            registry=self.registry,
        )
        self._stun_children = {
            o: self._stun.labels(o) for o in ("answered", "dropped", "rate_limited")
        }
        self._change_children = {c: self._device_changes.labels(c.value) for c in Change}
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def rpc(self, method: str) -> RpcMetrics:
        metrics = RpcMetrics(method)
        self._rpc.methods.append(metrics)
        return metrics

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

    def shed_counter(self, method: str) -> Callable[[], None]:
        """What a handler calls when it refuses a call of ``method``. The series appears
        with the first refusal, so exempt methods export none."""
        counter = self._requests_shed

        def count() -> None:
            counter.labels(method).inc()

        return count

    def watch_shedding(self, shedding: Shedding) -> None:
        """Export the in-flight counts and the loop lag of ``shedding`` at scrape time."""
        for call_class, lane in shedding.lanes.items():
            self._in_flight.labels(call_class.value).set_function(partial(_in_flight, lane))
        self._in_flight_total.set_function(lambda: shedding.in_flight)
        self._loop_lag.set_function(lambda: shedding.lag_ms / 1000)

    def device_changed(self, event: DeviceChanged) -> None:
        self._change_children[event.change].inc()
        if event.change is Change.EXPIRED:
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
