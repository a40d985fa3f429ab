"""``python -m benchmarks.run``: measure every system, write the report, print the headline.

Full mode (the default) loads a million users into each system, finds each workload's
closed-loop maximum, sweeps open-loop load from 10 % to 120 % of it, measures unloaded
ping-pong latency and compares all systems at one common load: about 40 minutes on two
cores with all four systems. Then the native phase (:mod:`benchmarks.native_phase`) drives
the same workloads with h2load and redis-benchmark, whose own CPU cost does not cap what a
fast server shows (``--generators`` picks either or both). ``--quick`` (CI) uses 200 users
and about one second per point (half a second per native point).

Data is generated once (see ``benchmarks.generate``); all systems run side by side for the
whole run and points are interleaved across them (see ``benchmarks.plan``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib
import os
import platform
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import generate
from benchmarks.dataset import LEASE_MS, Dataset
from benchmarks.figures import (
    Figure,
    Memory,
    RunInfo,
    RunResult,
    failed_figure,
    measured_figure,
)
from benchmarks.headline import headlines, native_leads
from benchmarks.keys import DISTRIBUTIONS, UNIFORM
from benchmarks.loadgen import (
    ARRIVALS,
    CLOSED,
    OPEN,
    POISSON,
    GeneratorPool,
    LoadgenError,
    LoadSpec,
    pingpong,
)
from benchmarks.native_drivers import NativeWorkload
from benchmarks.native_phase import NATIVE_PHASES, measure_native, native_keys, native_plan
from benchmarks.plan import (
    COMMON,
    FULL_FRACTIONS,
    NATIVE_SATURATION,
    QUICK_FRACTIONS,
    SATURATION,
    SWEEP,
    UNLOADED,
    Rate,
    common_rates,
    fraction_rates,
    interleave,
    open_loop_concurrency,
    parse_rates,
    saturation_concurrency,
)
from benchmarks.procstat import total_cpu_seconds, total_peak_rss_bytes
from benchmarks.report import RESULTS_DIR, write_report
from benchmarks.systems.base import ClientSpec, System

# name -> (module, class); imported only when selected, so one missing system module
# does not stop runs of the others (but selecting it is an error).
SYSTEMS: dict[str, tuple[str, str]] = {
    "supernode": ("benchmarks.systems.supernode", "SupernodeSystem"),
    "grpc-echo": ("benchmarks.systems.echo", "EchoSystem"),
    "etcd": ("benchmarks.systems.etcd", "EtcdSystem"),
    "redis": ("benchmarks.systems.redis", "RedisSystem"),
}
# Per point on top of warm-up and duration: connecting, starting, draining, collecting.
POINT_OVERHEAD_S = 1.5
PYTHON_GENERATOR = "python"
NATIVE_GENERATOR = "native"  # h2load, and redis-benchmark for Redis
GENERATORS = (PYTHON_GENERATOR, NATIVE_GENERATOR)
# Quick mode's native points: h2load settles within a fraction of a second, and CI
# checks that every system yields native figures, for which saturation alone will do.
QUICK_NATIVE_DURATION_S = 0.5
QUICK_NATIVE_WARMUP_S = 0.1
QUICK_NATIVE_PHASES = (NATIVE_SATURATION,)

T = TypeVar("T")


class SetupError(Exception):
    """The run cannot start as asked (unknown or unavailable system, bad option)."""


@dataclass(frozen=True)
class Settings:
    users: int
    seed: int
    systems: list[str]
    duration_s: float
    warmup_s: float
    rates: list[Rate]
    processes: int
    connections: int
    key_dist: str
    arrivals: str
    common: bool
    quick: bool
    out: Path
    supernode_workers: int = 1
    generators: tuple[str, ...] = GENERATORS
    native_duration_s: float = 10.0
    native_warmup_s: float = 2.0
    native_phases: tuple[str, ...] = NATIVE_PHASES

    @property
    def python(self) -> bool:
        return PYTHON_GENERATOR in self.generators

    @property
    def native(self) -> bool:
        return NATIVE_GENERATOR in self.generators


def load_system(name: str, supernode_workers: int = 1) -> System:
    if name not in SYSTEMS:
        raise SetupError(f"unknown system {name!r}: choose from {', '.join(SYSTEMS)}")
    module_name, class_name = SYSTEMS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SetupError(
            f"system {name!r} is not available ({exc}); leave it out with --systems"
        ) from exc
    options = {"workers": supernode_workers} if name == "supernode" else {}
    system: System = getattr(module, class_name)(**options)
    return system


class PointRunner:
    """Runs one point and turns its result into a figure, charging server CPU to it."""

    def __init__(self, pool: GeneratorPool | None, systems: dict[str, System], total: int) -> None:
        self._pool = pool
        self._systems = systems
        self._total = total
        self._done = 0
        self.figures: list[Figure] = []

    async def measure(self, spec: LoadSpec, phase: str, label: str) -> Figure:
        if self._pool is None:
            raise RuntimeError("no generator pool: the Python generator was not selected")
        pids = self.server_pids(spec.client.system)
        cpu_before = total_cpu_seconds(pids)
        try:
            result = await asyncio.to_thread(self._pool.run, spec)
        except LoadgenError as exc:
            figure = failed_figure(spec, phase, label, str(exc).strip().splitlines()[-1])
        else:
            cpu = total_cpu_seconds(pids) - cpu_before
            figure = measured_figure(spec, phase, label, result, cpu)
        figure = dataclasses.replace(figure, server_processes=max(1, len(pids)))
        self.record(figure)
        return figure

    def server_pids(self, system: str) -> list[int]:
        return self._systems[system].server_pids()

    def record(self, figure: Figure) -> None:
        """Keep ``figure`` and print its progress line."""
        self.figures.append(figure)
        self._done += 1
        print(self._progress(figure), flush=True)

    def _progress(self, f: Figure) -> str:
        head = (
            f"[{self._done:3d}/{self._total}] {f.phase:17s} {f.system:9s} {f.workload:18s} "
            f"{f.rate_label:>9s}"
        )
        if f.failure is not None:
            return f"{head}  FAILED: {f.failure}"
        errors = f"  errors {f.errors}" if f.errors else ""
        return (
            f"{head}  {f.achieved_rate:9,.0f} ops/s  p50 {f.p50_us / 1000:7.2f} ms  "
            f"p99 {f.p99_us / 1000:7.2f} ms{errors}"
        )


def _spec(settings: Settings, client: ClientSpec, mode: str, **options: Any) -> LoadSpec:
    return LoadSpec(
        client,
        mode,
        settings.duration_s,
        warmup_s=settings.warmup_s,
        users=settings.users,
        seed=settings.seed,
        key_dist=settings.key_dist,
        arrivals=settings.arrivals,
        **options,
    )


def unloaded_spec(settings: Settings, client: ClientSpec) -> LoadSpec:
    """Ping-pong for ``client`` with the run's duration, warm-up and key choice."""
    return pingpong(
        client,
        settings.duration_s,
        warmup_s=settings.warmup_s,
        users=settings.users,
        seed=settings.seed,
        key_dist=settings.key_dist,
    )


def open_loop_spec(settings: Settings, client: ClientSpec, rate: float) -> LoadSpec:
    """Open loop at ``rate`` ops/s, with room for twice the saturation concurrency in flight."""
    in_flight = open_loop_concurrency(client.batch)
    return _spec(
        settings,
        client,
        OPEN,
        rate=rate,
        concurrency=in_flight,
        connections=min(settings.connections, in_flight),
        processes=settings.processes,
    )


def point_count(settings: Settings, workloads: int, native_workloads: int) -> int:
    python = workloads * (2 + len(settings.rates) + (1 if settings.common else 0))
    return (python if settings.python else 0) + native_workloads * len(settings.native_phases)


def native_workloads(settings: Settings, systems: Sequence[System]) -> list[NativeWorkload]:
    """Every system's native workloads, interleaved like the Python generator's (none if
    the native generator is not selected)."""
    if not settings.native:
        return []
    keys = native_keys(settings.users, settings.seed, settings.key_dist)
    try:
        return native_plan(systems, keys)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc


async def measure_all(
    runner: PointRunner, settings: Settings, workloads_by_system: Sequence[Sequence[ClientSpec]]
) -> None:
    """The four phases of :mod:`benchmarks.plan`, each interleaved across systems."""
    clients = interleave(workloads_by_system)
    for client in clients:
        await runner.measure(unloaded_spec(settings, client), UNLOADED, "c=1")

    maxima: dict[tuple[str, str], float] = {}
    for client in clients:
        in_flight = saturation_concurrency(client.batch)
        spec = _spec(
            settings,
            client,
            CLOSED,
            concurrency=in_flight,
            connections=min(settings.connections, in_flight),
            processes=settings.processes,
        )
        figure = await runner.measure(spec, SATURATION, f"c={in_flight}")
        maxima[figure.key] = figure.achieved_rate

    for rate in settings.rates:
        for client in clients:
            target = rate.ops_per_s(maxima.get((client.system, client.workload), 0.0))
            if target > 0:  # no maximum (the saturation point failed): nothing to sweep
                await runner.measure(open_loop_spec(settings, client, target), SWEEP, rate.label)

    if settings.common:
        batches = {(c.system, c.workload): c.batch for c in clients}
        common = common_rates(maxima, batches)
        for client in clients:
            if client.batch in common:
                same = common[client.batch]
                spec = open_loop_spec(settings, client, same)
                await runner.measure(spec, COMMON, f"{same:,.0f}/s")


def describe_machine() -> dict[str, str]:
    """What a reader needs to judge absolute figures: cores, CPU, versions, load at start."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    import grpc

    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def timestamp() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


async def run(settings: Settings, argv: Sequence[str]) -> RunResult:
    started_at = timestamp()
    machine = describe_machine()
    # Fail before slow work.
    systems = [load_system(name, settings.supernode_workers) for name in settings.systems]
    dataset = Dataset(settings.users, settings.seed)
    await asyncio.to_thread(generate.ensure_cached, dataset)
    notes: list[str] = []
    if settings.supernode_workers > 1 and "supernode" in settings.systems:
        notes.append(
            f"the supernode ran as {settings.supernode_workers} processes (--workers): "
            "its CPU and memory figures are their sums"
        )
    running: list[System] = []
    memory: list[Memory] = []
    try:
        # The supernode starts last: its device leases run from its load (LEASE_MS), so the
        # other systems' loading should not eat into them.
        for system in sorted(systems, key=lambda s: s.name == "supernode"):
            began = time.monotonic()
            print(f"starting {system.name} with {settings.users:,} users ...", flush=True)
            await system.start(dataset)
            running.append(system)
            print(f"  {system.name} ready in {time.monotonic() - began:.1f} s", flush=True)
        workloads = [system.workloads() for system in systems]  # in the order asked for
        natives = native_workloads(settings, systems)
        python_points = point_count(settings, sum(len(w) for w in workloads), 0)
        native_points = point_count(
            dataclasses.replace(settings, generators=(NATIVE_GENERATOR,)), 0, len(natives)
        )
        total = python_points + native_points
        estimate = python_points * (
            settings.warmup_s + settings.duration_s + POINT_OVERHEAD_S
        ) + native_points * (settings.native_warmup_s + settings.native_duration_s + 1)
        print(f"{total} points, about {estimate / 60:.1f} min", flush=True)
        if estimate * 1000 > 0.9 * LEASE_MS:
            notes.append(
                f"the run was estimated at {estimate / 60:.0f} min: supernode device leases "
                f"({LEASE_MS // 60_000} min) may have ended before its last points"
            )
            print(f"warning: {notes[-1]}", file=sys.stderr)
        by_name: dict[str, System] = {s.name: s for s in running}
        runner = PointRunner(None, by_name, total)
        if settings.python:
            with GeneratorPool(settings.processes) as pool:
                runner = PointRunner(pool, by_name, total)
                await measure_all(runner, settings, workloads)
        await measure_native(
            natives, runner.server_pids, runner.record, connections=settings.connections,
            duration_s=settings.native_duration_s, warmup_s=settings.native_warmup_s,
            phases=settings.native_phases,
        )  # fmt: skip
        memory = [
            Memory(s.name, total_peak_rss_bytes(s.server_pids()), settings.users) for s in systems
        ]
    finally:
        for system in reversed(running):
            try:
                await system.stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {system.name} failed: {exc}", file=sys.stderr)
    info = RunInfo(
        started_at=started_at,
        finished_at=timestamp(),
        command=list(argv),
        users=settings.users,
        seed=settings.seed,
        key_dist=settings.key_dist,
        arrivals=settings.arrivals,
        processes=settings.processes,
        duration_s=settings.duration_s,
        warmup_s=settings.warmup_s,
        quick=settings.quick,
        systems=[s.name for s in systems],
        machine=machine,
        notes=notes,
    )
    return RunResult(info, runner.figures, memory)


# ---------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Lookup latency and throughput of the supernode against baselines.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="CI mode: 200 users, ~1 s per point, 3 points")
    add("--users", type=int, help="users in the data set (default 1000000; quick 200)")
    add("--seed", type=int, default=1, help="data set seed")
    add("--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS))
    add("--duration", type=float, help="measured seconds per point (default 10; quick 1)")
    add("--warmup", type=float, help="unmeasured seconds before each point (default 2; quick 0.25)")
    rates_help = (
        "sweep: percentages of each maximum and/or absolute ops/s, e.g. 10%%,50%%,120%% or "
        "500,1000 (default 10,25,50,75,90,100,120%%; quick 50%%)"
    )
    add("--rates", help=rates_help)
    add("--processes", type=int, default=1, help="load-generator processes")
    add(
        "--supernode-workers",
        type=int,
        default=1,
        help="processes serving the supernode's port (supernode serve --workers)",
    )
    add("--connections", type=int, default=4, help="client connections in total per point")
    add("--key-dist", choices=DISTRIBUTIONS, default=UNIFORM, help="which users are looked up")
    add("--arrivals", choices=ARRIVALS, default=POISSON, help="open-loop arrival process")
    add("--no-common", action="store_true", help="skip the common-load comparison points")
    add(
        "--generators",
        default=",".join(GENERATORS),
        help="comma-separated, from: python (benchmarks.loadgen, all four phases), "
        "native (h2load and redis-benchmark: unloaded and saturation)",
    )
    add("--out", type=Path, default=RESULTS_DIR, help="results go to OUT/<timestamp>/")
    return parser


def settings_from_args(argv: Sequence[str]) -> Settings:
    args = _parser().parse_args(argv)
    quick = bool(args.quick)
    try:
        rates = parse_rates(args.rates) if args.rates else None
    except ValueError as exc:
        raise SetupError(f"--rates: {exc}") from exc
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    generators = tuple(name.strip() for name in args.generators.split(",") if name.strip())
    if not generators or not set(generators) <= set(GENERATORS):
        raise SetupError(f"--generators: choose from {', '.join(GENERATORS)}")
    for name in systems:
        if name not in SYSTEMS:
            raise SetupError(f"--systems: unknown {name!r}; choose from {', '.join(SYSTEMS)}")
    settings = Settings(
        users=args.users or (200 if quick else 1_000_000),
        seed=args.seed,
        systems=systems,
        duration_s=args.duration or (1.0 if quick else 10.0),
        warmup_s=args.warmup if args.warmup is not None else (0.25 if quick else 2.0),
        rates=rates or fraction_rates(QUICK_FRACTIONS if quick else FULL_FRACTIONS),
        processes=args.processes,
        connections=args.connections,
        key_dist=args.key_dist,
        arrivals=args.arrivals,
        common=not (quick or args.no_common),
        quick=quick,
        out=args.out,
        supernode_workers=args.supernode_workers,
        generators=generators,
        native_duration_s=args.duration or (QUICK_NATIVE_DURATION_S if quick else 10.0),
        native_warmup_s=(
            args.warmup if args.warmup is not None else (QUICK_NATIVE_WARMUP_S if quick else 2.0)
        ),
        native_phases=QUICK_NATIVE_PHASES if quick else NATIVE_PHASES,
    )
    if settings.supernode_workers < 1:
        raise SetupError("--supernode-workers must be at least 1")
    if settings.users < 1 or settings.processes < 1 or settings.connections < 1:
        raise SetupError("--users, --processes and --connections must be at least 1")
    if not systems:
        raise SetupError("--systems: none selected")
    return settings


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop, the loop the generators use too (asyncio's where missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from_args(argv)
        result = run_event_loop(run(settings, argv))
    except SetupError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    directory = write_report(result, settings.out)
    print()
    for item in headlines(result):
        print(f"{item.label}: {item.text}   ({item.detail})")
    for lead in native_leads(result):
        print(f"- {lead}")
    print(f"\nresults: {directory}")
    failed = [f for f in result.figures if f.failure is not None]
    if failed:
        print(f"{len(failed)} point(s) failed; see results.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
