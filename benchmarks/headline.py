"""The few numbers a run is read for, computed from that run's own figures only.

Absolute figures swing 20-40 % between runs on a shared machine while ratios inside one
run are steady, so the headline is mostly ratios against systems measured alongside. The
native generator's figures (h2load, redis-benchmark) get their own ratios, per machine and
per server process, and :func:`native_leads` says in words which system is ahead of ours
on each comparable workload, and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.figures import Figure, RunResult
from benchmarks.plan import NATIVE_SATURATION, NATIVE_UNLOADED, SATURATION, SWEEP, UNLOADED

SUPERNODE = "supernode"
ECHO = "grpc-echo"
ETCD = "etcd"
REDIS = "redis"
# Our workload and each baseline's equivalent (the same users, the same answer per key).
EQUIVALENTS: tuple[tuple[str, str, str], ...] = (
    ("lookup", ETCD, "range-serializable"),
    ("lookup", REDIS, "get"),
    ("lookup", ECHO, "echo"),
    ("lookup-many-10", ETCD, "txn-10"),
    ("lookup-many-10", REDIS, "mget-10"),
    ("lookup-many-100", ETCD, "txn-100"),
    ("lookup-many-100", REDIS, "mget-100"),
    ("lookup-many-100", ECHO, "echo-100"),
)
MIB = 1 << 20
# Below this many users the server's fixed memory (interpreter, gRPC, block cache
# reservations) dwarfs the data and a per-million extrapolation would mislead.
RSS_MIN_USERS = 100_000


@dataclass(frozen=True)
class Headline:
    key: str
    label: str
    value: float | None  # None: not measured in this run (the detail says why)
    unit: str
    detail: str

    @property
    def text(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        return f"{self.value:,.2f} {self.unit}"


def _one(run: RunResult, system: str, workload: str, phase: str, label: str = "") -> Figure | None:
    for figure in run.find(system, workload, phase):
        if (
            figure.failure is None
            and figure.completed
            and (not label or figure.rate_label == label)
        ):
            return figure
    return None


def _batch_workload(
    run: RunResult, system: str, batch: int, prefer: str, phase: str = SATURATION
) -> Figure | None:
    """The system's saturation figure for ``batch`` keys, preferring names starting ``prefer``."""
    candidates = [
        f
        for f in run.figures
        if f.system == system
        and f.batch == batch
        and f.phase == phase
        and f.completed
        and f.failure is None
    ]
    candidates.sort(key=lambda f: not f.workload.startswith(prefer))
    return candidates[0] if candidates else None


def _ratio(
    key: str, label: str, top: Figure | None, bottom: Figure | None, attr: str, what: str
) -> Headline:
    if top is None or bottom is None:
        missing = [name for name, f in (("numerator", top), ("denominator", bottom)) if f is None]
        return Headline(key, label, None, "x", f"not measured ({', '.join(missing)} missing)")
    a, b = getattr(top, attr), getattr(bottom, attr)
    if a is None or b is None:
        return Headline(key, label, None, "x", f"not measured ({attr} missing)")
    value = a / b if b else None
    detail = (
        f"{top.system} {top.workload} {a:,.0f} / {bottom.system} {bottom.workload} {b:,.0f} {what}"
    )
    return Headline(key, label, value, "x", detail)


def headlines(run: RunResult) -> list[Headline]:
    sn_max = _one(run, SUPERNODE, "lookup", SATURATION)
    sn_many = _one(run, SUPERNODE, "lookup-many-100", SATURATION)
    items = [
        _ratio(
            "lookup_max_vs_echo",
            "supernode lookup max throughput / gRPC echo max",
            sn_max,
            _one(run, ECHO, "echo", SATURATION),
            "achieved_rate",
            "ops/s",
        ),
        _ratio(
            "unloaded_p50_vs_echo",
            "supernode unloaded lookup p50 / gRPC echo unloaded p50",
            _one(run, SUPERNODE, "lookup", UNLOADED),
            _one(run, ECHO, "echo", UNLOADED),
            "p50_us",
            "µs",
        ),
        _p99_at_half(_one(run, SUPERNODE, "lookup", SWEEP, "50%")),
        # The same point for the framework alone: the floor this machine sets for any
        # gRPC service, since the generator shares its cores.
        _p99_at_half(_one(run, ECHO, "echo", SWEEP, "50%"), ECHO),
        _ratio(
            "lookup_many_100_vs_etcd_txn_100",
            "supernode lookup-many-100 handles/s / etcd txn-100 keys/s",
            sn_many,
            _batch_workload(run, ETCD, 100, "txn"),
            "keys_per_s",
            "keys/s",
        ),
        _ratio(
            "lookup_many_100_vs_echo_100",
            "supernode lookup-many-100 handles/s / gRPC echo-100 (same reply size)",
            sn_many,
            _one(run, ECHO, "echo-100", SATURATION),
            "keys_per_s",
            "keys/s",
        ),
        _rss_per_million(run),
        *native_headlines(run),
    ]
    return items


def native_headlines(run: RunResult) -> list[Headline]:
    """The issue's ratios with the native generator: ours against the echo ceiling per
    process, and against etcd and Redis per machine (each is one server process here; with
    ``--supernode-workers`` ours is several, so the per-process ratio is given too)."""

    def sat(system: str, workload: str) -> Figure | None:
        return _one(run, system, workload, NATIVE_SATURATION)

    sn, sn_many = sat(SUPERNODE, "lookup"), sat(SUPERNODE, "lookup-many-100")
    etcd_range = sat(ETCD, "range-serializable")
    etcd_txn = _batch_workload(run, ETCD, 100, "txn", NATIVE_SATURATION)
    return [
        _ratio("native_lookup_vs_echo_per_process",
               "native: supernode lookup / gRPC echo, per server process",
               sn, sat(ECHO, "echo"), "rate_per_process", "ops/s per process"),
        _ratio("native_unloaded_mean_vs_echo",
               "native: supernode unloaded lookup mean / gRPC echo unloaded mean",
               _one(run, SUPERNODE, "lookup", NATIVE_UNLOADED),
               _one(run, ECHO, "echo", NATIVE_UNLOADED), "mean_us", "µs"),
        _ratio("native_lookup_vs_etcd_range_per_machine",
               "native: supernode lookup / etcd serializable range, per machine",
               sn, etcd_range, "achieved_rate", "ops/s"),
        _ratio("native_lookup_vs_etcd_range_per_process",
               "native: supernode lookup / etcd serializable range, per server process",
               sn, etcd_range, "rate_per_process", "ops/s per process"),
        _ratio("native_lookup_vs_redis_get_per_machine",
               "native: supernode lookup / redis get, per machine",
               sn, sat(REDIS, "get"), "achieved_rate", "ops/s"),
        _ratio("native_lookup_many_100_vs_etcd_txn_100",
               "native: supernode lookup-many-100 handles/s / etcd txn-100 keys/s",
               sn_many, etcd_txn, "keys_per_s", "keys/s"),
        _ratio("native_lookup_many_100_vs_redis_mget_100",
               "native: supernode lookup-many-100 handles/s / redis mget-100 keys/s",
               sn_many, sat(REDIS, "mget-100"), "keys_per_s", "keys/s"),
    ]  # fmt: skip


def _generators(a: Figure, b: Figure) -> str:
    return a.generator if a.generator == b.generator else f"{a.generator} and {b.generator}"


def _times(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def native_leads(run: RunResult) -> list[str]:
    """For each of our workloads and a baseline's equivalent, both measured with the native
    generator: which is ahead per machine, by how much, and at what server CPU per key."""
    lines = []
    for ours, system, theirs in EQUIVALENTS:
        mine, rival = (
            _one(run, SUPERNODE, ours, NATIVE_SATURATION),
            _one(run, system, theirs, NATIVE_SATURATION),
        )
        if mine is None or rival is None or not mine.keys_per_s or not rival.keys_per_s:
            continue
        ahead, behind = (rival, mine) if rival.keys_per_s > mine.keys_per_s else (mine, rival)
        unit = "keys/s" if mine.batch > 1 else "ops/s"
        cpu = ""
        if mine.server_cpu_us_per_op is not None and rival.server_cpu_us_per_op is not None:
            cpu = (
                f"; server CPU {rival.server_cpu_us_per_op / rival.batch:,.1f} µs per key for "
                f"{system}, {mine.server_cpu_us_per_op / mine.batch:,.1f} for supernode"
            )
        per_process = ""
        if mine.server_processes != rival.server_processes:
            per_process = (
                f"; per server process {_times(ahead.rate_per_process, behind.rate_per_process)}"
            )
        lines.append(
            f"{ahead.system} {ahead.workload} is {_times(ahead.keys_per_s, behind.keys_per_s)} "
            f"{behind.system} {behind.workload} per machine ({ahead.keys_per_s:,.0f} against "
            f"{behind.keys_per_s:,.0f} {unit}, {_generators(ahead, behind)}{per_process}{cpu})"
        )
    return lines


def _p99_at_half(figure: Figure | None, system: str = SUPERNODE) -> Headline:
    if system == SUPERNODE:
        key, label = "p99_at_half_max_ms", "supernode lookup p99 at 50% of its max"
    else:
        key, label = f"{system}_p99_at_half_max_ms", f"{system} p99 at 50% of its max"
    if figure is None:
        return Headline(key, label, None, "ms", "no 50% sweep point in this run")
    detail = (
        f"target {figure.target_rate or 0:,.0f} ops/s, achieved {figure.achieved_rate:,.0f} "
        f"ops/s, p50 {figure.p50_us / 1000:.2f} ms"
    )
    return Headline(key, label, figure.p99_us / 1000, "ms", detail)


def _rss_per_million(run: RunResult) -> Headline:
    key, label = "rss_per_million_users_mib", "supernode peak RSS per 1M users"
    memory = next((m for m in run.memory if m.system == SUPERNODE and m.peak_rss_bytes), None)
    if memory is None:
        return Headline(key, label, None, "MiB", "supernode not measured")
    detail = f"peak RSS {memory.peak_rss_bytes / MIB:,.0f} MiB with {memory.users:,} users"
    if memory.users < RSS_MIN_USERS:
        return Headline(key, label, None, "MiB", f"{detail}: too few users to extrapolate")
    return Headline(key, label, memory.per_million_users_bytes / MIB, "MiB", detail)
