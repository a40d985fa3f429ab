"""The few numbers a run is read for, computed from that run's own figures only.

Absolute figures swing 20-40 % between runs on a shared machine while ratios inside one
run are steady, so the headline is mostly ratios against systems measured alongside.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.figures import Figure, RunResult
from benchmarks.plan import SATURATION, SWEEP, UNLOADED

SUPERNODE = "supernode"
ECHO = "grpc-echo"
ETCD = "etcd"
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


def _batch_workload(run: RunResult, system: str, batch: int, prefer: str) -> Figure | None:
    """The system's saturation figure for ``batch`` keys, preferring names starting ``prefer``."""
    candidates = [
        f
        for f in run.figures
        if f.system == system and f.batch == batch and f.phase == SATURATION and f.completed
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
    ]
    return items


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
