"""Prometheus metrics of one supernode, on their own registry (no global state).

The per-call cost matters on the lookup path, so RPC counts and latencies are plain Python
integers (one bisect and two additions per call, no locks) that a collector turns into
Prometheus counter and histogram families at scrape time. Measured inside a loaded server,
prometheus-client's locked ``Counter.inc`` plus ``Histogram.observe`` cost several
microseconds per call; this is a fraction of one.
"""

import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import partial
from itertools import accumulate
from time import perf_counter
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from supernode import __version__, metrics_http
from supernode.directory.presence import Change, DeviceChanged
from supernode.metrics_http import Readiness
from supernode.overload import Lane, Shedding
from supernode.rpc.arrival import arrived_at

# Lookups take tens of microseconds to a few milliseconds; registrations up to ~10 ms.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
)  # fmt: skip
# Event-loop lag: a healthy loop is late by well under a millisecond; shedding starts at a
# second by default (overload.max_loop_lag_ms).
_LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _counter_total(counter: Counter) -> int:
    """The sum of a labelled counter's series."""
    return int(
        sum(
            s.value
            for family in counter.collect()
            for s in family.samples
            if s.name.endswith("_total")
        )
    )


def _in_flight(lane: Lane) -> float:
    return lane.in_flight


class _Histograms:
    """Latency buckets of one method, one row per status code: ``[sum, count per bound...,
    +Inf]``, made cumulative at scrape time."""

    def __init__(self) -> None:
        self.rows: dict[grpc.StatusCode, list[float]] = {}
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


class RpcMetrics:
    """Counts, latencies and calls in flight of one RPC method.

    Two latencies per call: ``handler`` from the handler's start to its answer (the
    servicer's own cost), and ``latency`` from the call's arrival in Python
    (``supernode.rpc.arrival``) until its answer is handed back to gRPC (a unary call) or
    its stream ended: what a client waits for, less the kernel's and the C core's queues.

    Why the answer's hand-over and not gRPC's "call done" callback: the C core writes the
    response on its own threads, so the client has it while the event loop may still be
    busy; the callback would add the loop's delay in *noticing* the write finished, which
    no client waits for, and it cost CPU on every call. ``in_flight`` counts calls inside
    their handler: open streams, and unary calls waiting for another party (a peer node, a
    callee); calls queued in front of the loop show as ``latency`` minus ``handler`` and
    as event-loop lag.

    Only the event-loop thread writes; the scrape thread reads. A scrape that races a
    call may see the sum one observation ahead of the buckets, which Prometheus tolerates.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.handler = _Histograms()
        self.latency = _Histograms()
        self.in_flight = 0

    def start(self) -> float:
        """A call began: count it in flight; returns its arrival time (perf_counter)."""
        self.in_flight += 1
        return arrived_at(perf_counter())

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        """The handler answered ``code`` after ``seconds`` of its own work."""
        self.handler.observe(code, seconds)

    def done(self, code: grpc.StatusCode, arrived: float) -> None:
        """The call answered ``code``: no longer in flight; its latency since arrival."""
        self.in_flight -= 1
        self.latency.observe(code, perf_counter() - arrived)


class RpcCollector(Collector):
    """Exports every :class:`RpcMetrics`: ``supernode_rpc_requests_total`` and the two
    latency histograms labelled by method and status code, calls in flight by method."""

    def __init__(self) -> None:
        self.methods: list[RpcMetrics] = []

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "supernode_rpc_requests",
            "gRPC calls handled, by method and status code.",
            labels=["method", "code"],
        )
        handler = HistogramMetricFamily(
            "supernode_rpc_handler_seconds",
            "Time a gRPC call spent inside its handler (no queueing), by method and code.",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "supernode_rpc_latency_seconds",
            "Time from a gRPC call's arrival in the server process to its answer handed to "
            "gRPC (unary) or its end (streams), queueing in the event loop included, by "
            "method and code. Not included: the kernel's and gRPC's C core queues.",
            labels=["method", "code"],
        )
        in_flight = GaugeMetricFamily(
            "supernode_rpc_in_flight",
            "gRPC calls inside their handler on this process (open streams, calls waiting "
            "for another party), by method.",
            labels=["method"],
        )
        bounds = [*(repr(b) for b in _LATENCY_BUCKETS), "+Inf"]
        for metrics in self.methods:
            in_flight.add_metric([metrics.method], metrics.in_flight)
            for code, row in list(metrics.handler.rows.items()):
                counts = list(accumulate(int(n) for n in row[1:]))
                labels = [metrics.method, code.name]
                requests.add_metric(labels, counts[-1])
                handler.add_metric(labels, list(zip(bounds, counts, strict=True)), row[0])
            for code, row in list(metrics.latency.rows.items()):
                counts = list(accumulate(int(n) for n in row[1:]))
                latency.add_metric(
                    [metrics.method, code.name], list(zip(bounds, counts, strict=True)), row[0]
                )
        yield requests
        yield handler
        yield latency
        yield in_flight


class Metrics:
    """Every metric a supernode exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rpc = RpcCollector()
        self.registry.register(self._rpc)
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time:
        # each process of a node (primary, workers) reports its own.
        ProcessCollector(registry=self.registry)
        build = Gauge(
            "supernode_build_info",
            "Always 1; the labels say which build runs (supernode, Python, grpcio versions).",
            ["version", "python", "grpc"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version(), grpc.__version__).set(1)
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
            "Revocations made here, by kind: logout (one session), account (RevokeSessions) "
            "or rotation (RotateKey ends the sessions of the old key).",
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
        self._privacy_hidden = Counter(
            "supernode_privacy_hidden",
            "Handles a call showed its caller as offline because their privacy settings "
            "(visibility, block list) refuse the caller, by method; a Watch counts each "
            "change it withheld.",
            ["method"],
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
        self._rate_limited = Counter(
            "supernode_rate_limited",
            "Calls refused with RESOURCE_EXHAUSTED for going over a rate limit "
            "(supernode.rate), by method and the kind of key whose limit it was (source, "
            "account, failed_login_source, failed_login_account).",
            ["method", "key"],
            registry=self.registry,
        )
        self.rate_share = Gauge(
            "supernode_rate_limit_share",
            "The share of each configured rate limit this node enforces: 1/N in a "
            "cluster of N live nodes (supernode.rate), 1 alone.",
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "supernode_in_flight",
            "Gated calls inside their handler on this process, by class (supernode.overload).",
            ["call_class"],
            registry=self.registry,
        )
        self._in_flight_total = Gauge(
            "supernode_in_flight_all_classes",
            "Gated calls inside their handler on this process, all classes.",
            registry=self.registry,
        )
        self._loop_lag = Gauge(
            "supernode_event_loop_lag_seconds",
            "How late the latest event-loop lag probe fired (supernode.loop_lag).",
            registry=self.registry,
        )
        self.loop_lag_probes = Histogram(
            "supernode_event_loop_lag_probe_seconds",
            "How late each event-loop lag probe fired (supernode.loop_lag): the wait a "
            "ready call had in front of the loop.",
            buckets=_LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self._stun_children = {
            o: self._stun.labels(o) for o in ("answered", "dropped", "rate_limited")
        }
        self._change_children = {c: self._device_changes.labels(c.value) for c in Change}
        self._http: WSGIServer | None = None
        # Why /readyz answers 503, or None when ready (set by the process's lifecycle).
        self.not_ready: str | None = "starting"
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

    def count_rate_limited(self, method: str, key: str) -> None:
        self._rate_limited.labels(method, key).inc()

    def watch_shedding(self, shedding: Shedding) -> None:
        """Export the in-flight counts and the loop lag of ``shedding`` at scrape time."""
        for call_class, lane in shedding.lanes.items():
            self._in_flight.labels(call_class.value).set_function(partial(_in_flight, lane))
        self._in_flight_total.set_function(lambda: shedding.in_flight)
        self._loop_lag.set_function(lambda: shedding.lag_ms / 1000)

    def refusal_totals(self) -> dict[str, int]:
        """Calls refused since start, by reason, for the periodic log summary
        (``supernode.log_summary``): read from the counters, nothing added per call."""
        by_code = {grpc.StatusCode.UNAUTHENTICATED: 0, grpc.StatusCode.PERMISSION_DENIED: 0}
        for method in list(self._rpc.methods):
            for code in by_code:
                row = method.handler.rows.get(code)
                if row is not None:
                    by_code[code] += int(sum(row[1:]))
        return {
            "rate_limited": _counter_total(self._rate_limited),
            "overload_shed": _counter_total(self._requests_shed),
            "unauthenticated": by_code[grpc.StatusCode.UNAUTHENTICATED],
            "permission_denied": by_code[grpc.StatusCode.PERMISSION_DENIED],
        }

    def device_changed(self, event: DeviceChanged) -> None:
        self._change_children[event.change].inc()
        if event.change is Change.EXPIRED:
            self.lease_expirations.inc()

    def count_hidden(self, method: str, handles: int = 1) -> None:
        if handles:
            self._privacy_hidden.labels(method).inc(handles)

    def count_stun(self, outcome: str) -> None:
        self._stun_children[outcome].inc()

    def serve_http(self, host: str, port: int, readiness: Readiness | None = None) -> int:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` (``supernode.metrics_http``) from
        a daemon thread; returns the bound port. Readiness is :attr:`not_ready` unless
        ``readiness`` says more (a cluster member's join)."""

        def ready() -> str | None:
            return self.not_ready or (None if readiness is None else readiness())

        self._http, self._http_thread = metrics_http.serve(self.registry, ready, host, port)
        return int(self._http.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
