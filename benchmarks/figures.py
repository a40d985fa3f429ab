"""The figures of a run: one record per measured point, plus memory and run settings.

Plain dataclasses of JSON-friendly fields, so ``results.json`` is ``dataclasses.asdict``
and a report can be rebuilt from it (:func:`run_from_json`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from benchmarks import histogram as hist
from benchmarks.loadgen import LoadSpec, PointResult

PYTHON = "python"  # the generator of every figure but the native phase's


@dataclass(frozen=True)
class Figure:
    """One point: a system's workload in one phase at one load."""

    system: str
    workload: str
    batch: int
    phase: str  # unloaded | saturation | sweep | common (see benchmarks.plan)
    mode: str  # open | closed
    rate_label: str  # "50%", "1200/s", "c=64", "c=1"
    target_rate: float | None  # open loop: scheduled ops/s
    concurrency: int
    connections: int
    processes: int
    duration_s: float
    achieved_rate: float  # completed ops / measured seconds
    keys_per_s: float  # achieved_rate * batch
    completed: int
    errors: int
    error_kinds: dict[str, int]
    error_example: str
    unsent: int
    mean_us: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    send_lag_p99_us: int
    server_cpu_s: float
    server_cpu_s_per_1000_ops: float | None
    generator_cpu_s: float
    histogram: str = field(repr=False)  # encoded HdrHistogram, µs
    failure: str | None = None  # the point could not be measured at all
    generator: str = PYTHON  # python (benchmarks.loadgen) | h2load | redis-benchmark
    server_processes: int = 1  # processes serving the system (its CPU is theirs together)
    server_ok: int | None = None  # native points: OK answers the server itself counted

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.workload)

    @property
    def rate_per_process(self) -> float:
        """Operations per second per serving process (the machine's figure / processes)."""
        return self.achieved_rate / max(1, self.server_processes)

    @property
    def server_cpu_us_per_op(self) -> float | None:
        per_1000 = self.server_cpu_s_per_1000_ops
        return None if per_1000 is None else per_1000 * 1000


def measured_figure(
    spec: LoadSpec, phase: str, rate_label: str, result: PointResult, server_cpu_s: float
) -> Figure:
    latency = hist.summarize(hist.decode(result.histogram))
    lag = hist.decode(result.send_lag)
    per_1000 = 1000 * server_cpu_s / result.total_completed if result.total_completed else None
    return Figure(
        system=spec.client.system,
        workload=spec.client.workload,
        batch=spec.client.batch,
        phase=phase,
        mode=spec.mode,
        rate_label=rate_label,
        target_rate=spec.rate if spec.mode == "open" else None,
        concurrency=spec.concurrency,
        connections=spec.connections,
        processes=spec.processes,
        duration_s=spec.duration_s,
        achieved_rate=result.achieved_rate,
        keys_per_s=result.achieved_rate * spec.client.batch,
        completed=result.completed,
        errors=result.error_count,
        error_kinds=result.errors,
        error_example=next(iter(result.error_examples.values()), ""),
        unsent=result.unsent,
        mean_us=latency.mean,
        p50_us=latency.p50,
        p90_us=latency.p90,
        p99_us=latency.p99,
        p999_us=latency.p999,
        max_us=latency.max,
        send_lag_p99_us=lag.get_value_at_percentile(99) if lag.get_total_count() else 0,
        server_cpu_s=server_cpu_s,
        server_cpu_s_per_1000_ops=per_1000,
        generator_cpu_s=result.generator_cpu_s,
        histogram=result.histogram,
    )


def failed_figure(spec: LoadSpec, phase: str, rate_label: str, failure: str) -> Figure:
    """A point that produced nothing (a generator or the system failed): kept, not hidden."""
    empty = hist.encode(hist.new_histogram())
    nothing = PointResult(empty, empty, 0, 0, 0, {}, {}, 0.0, 0.0)
    return dataclasses.replace(
        measured_figure(spec, phase, rate_label, nothing, 0.0), failure=failure
    )


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of a system's server processes (VmHWM) for ``users`` users."""

    system: str
    peak_rss_bytes: int
    users: int

    @property
    def per_million_users_bytes(self) -> float:
        return self.peak_rss_bytes * 1_000_000 / self.users if self.users else 0.0


@dataclass(frozen=True)
class RunInfo:
    started_at: str
    finished_at: str
    command: list[str]
    users: int
    seed: int
    key_dist: str
    arrivals: str
    processes: int
    duration_s: float
    warmup_s: float
    quick: bool
    systems: list[str]
    machine: dict[str, str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    info: RunInfo
    figures: list[Figure]
    memory: list[Memory]

    def find(self, system: str, workload: str, phase: str) -> list[Figure]:
        return [
            f
            for f in self.figures
            if f.system == system and f.workload == workload and f.phase == phase
        ]


def run_to_json(run: RunResult) -> dict[str, Any]:
    memory = [
        {**dataclasses.asdict(m), "per_million_users_bytes": m.per_million_users_bytes}
        for m in run.memory
    ]
    figures = [
        {
            **dataclasses.asdict(f),
            "rate_per_process": f.rate_per_process,
            "server_cpu_us_per_op": f.server_cpu_us_per_op,
        }
        for f in run.figures
    ]
    return {"run": dataclasses.asdict(run.info), "figures": figures, "memory": memory}


def run_from_json(data: dict[str, Any]) -> RunResult:
    """The inverse of :func:`run_to_json` (derived fields are recomputed, not read)."""
    memory_fields = {f.name for f in dataclasses.fields(Memory)}
    figure_fields = {f.name for f in dataclasses.fields(Figure)}
    return RunResult(
        info=RunInfo(**data["run"]),
        figures=[
            Figure(**{k: v for k, v in f.items() if k in figure_fields}) for f in data["figures"]
        ],
        memory=[
            Memory(**{k: v for k, v in m.items() if k in memory_fields}) for m in data["memory"]
        ],
    )
