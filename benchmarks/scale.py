"""``python -m benchmarks.scale``: does lookup latency hold as the directory grows?

It answers one target, "Lookup p99 at 10M users <= 1.2 x at 10k users, same rate", from
ONE run: the supernode is loaded with the small data set, measured, stopped, then loaded
with the large one and measured again with the same points: unloaded ping-pong and the open
loop at the same absolute rates (a rate relative to each size's maximum would compare
different loads). Only one server is loaded at a time, so the large one has the machine's
memory and page cache to itself, as it would in production.

The ratio large/small of p50 and p99 at each load is the headline; the 1.2x target is shown
beside it as a figure, never asserted (latency on a shared machine is not a pass/fail test).
Points, load generation, CPU accounting and report formatting are those of
:mod:`benchmarks.run` and :mod:`benchmarks.report`.

Full mode (10k and 10M users): generating the 10M data set takes ~10 min once (cached
afterwards), loading it into the store ~15 min per run, the points a few minutes.
``--quick`` (CI) uses 200 and 2,000 users and one rate: seconds in total.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import generate
from benchmarks.dataset import Dataset
from benchmarks.figures import Figure
from benchmarks.keys import DISTRIBUTIONS, UNIFORM
from benchmarks.loadgen import POISSON, GeneratorPool
from benchmarks.plan import SWEEP, UNLOADED, Rate, parse_rates
from benchmarks.procstat import total_peak_rss_bytes
from benchmarks.report import (
    COST,
    LATENCY,
    MIB,
    RESULTS_DIR,
    Column,
    figure_table,
    format_ms,
    format_rate,
    markdown_table,
    run_directory,
)
from benchmarks.run import (
    POINT_OVERHEAD_S,
    PointRunner,
    Settings,
    SetupError,
    describe_machine,
    open_loop_spec,
    run_event_loop,
    timestamp,
    unloaded_spec,
)
from benchmarks.systems.supernode import SupernodeSystem

TARGET_RATIO = 1.2  # large p99 / small p99 at the same rate
JSON_NAME = "scale.json"
MARKDOWN_NAME = "scale.md"
UNLOADED_LABEL = "c=1"
FULL_SIZES = (10_000, 10_000_000)
QUICK_SIZES = (200, 2_000)
FULL_RATES = "500,1000,2000"
QUICK_RATES = "200"


def point_count(settings: Settings) -> int:
    """Points per size: unloaded, then each rate."""
    return 1 + len(settings.rates)


def point_seconds(settings: Settings) -> float:
    return settings.warmup_s + settings.duration_s + POINT_OVERHEAD_S


@dataclass(frozen=True)
class ScaleSettings:
    """The two sizes, plus the point settings both share (``points.users`` is replaced)."""

    small: int
    large: int
    points: Settings

    @property
    def sizes(self) -> tuple[int, int]:
        return (self.small, self.large)

    def for_size(self, users: int) -> Settings:
        return dataclasses.replace(self.points, users=users)

    @property
    def points_per_size(self) -> int:
        return point_count(self.points)


@dataclass(frozen=True)
class SizeResult:
    """Everything measured with one data set loaded."""

    users: int
    load_s: float  # writing the data set into the store
    ready_s: float  # from start until serving: load, open the store, log in
    peak_rss_bytes: int  # the server's VmHWM after its points
    load_average: str  # of the machine when its points began: other work shows here
    figures: list[Figure]

    def measured(self, label: str) -> Figure | None:
        """The figure at load ``label`` if it measured anything, else None."""
        for figure in self.figures:
            if figure.rate_label == label and figure.failure is None and figure.completed:
                return figure
        return None


@dataclass(frozen=True)
class Ratio:
    """Large over small at one load; None where either side measured nothing."""

    load: str
    small: Figure | None
    large: Figure | None

    def _of(self, field: str) -> float | None:
        if self.small is None or self.large is None:
            return None
        small, large = getattr(self.small, field), getattr(self.large, field)
        return large / small if small else None

    @property
    def p50(self) -> float | None:
        return self._of("p50_us")

    @property
    def p99(self) -> float | None:
        return self._of("p99_us")

    @property
    def within_target(self) -> bool | None:
        return None if self.p99 is None else self.p99 <= TARGET_RATIO


def ratios(small: SizeResult, large: SizeResult) -> list[Ratio]:
    """One ratio per load the small size was measured at, in measuring order."""
    labels = [figure.rate_label for figure in small.figures]
    return [Ratio(label, small.measured(label), large.measured(label)) for label in labels]


@dataclass(frozen=True)
class ScaleResult:
    settings: ScaleSettings
    started_at: str
    finished_at: str
    command: list[str]
    machine: dict[str, str]
    notes: list[str]
    sizes: list[SizeResult]

    def ratios(self) -> list[Ratio]:
        small, large = self.sizes
        return ratios(small, large)

    @property
    def failed(self) -> list[tuple[int, Figure]]:
        return [(s.users, f) for s in self.sizes for f in s.figures if f.failure is not None]


# ---------------------------------------------------------------------- measuring


async def measure_size(
    runner: PointRunner, system: SupernodeSystem, settings: Settings, notes: list[str]
) -> SizeResult:
    """Load ``settings.users`` users, run the points, and always stop the server after."""
    print(f"\nstarting supernode with {settings.users:,} users ...", flush=True)
    began = time.monotonic()
    try:
        await system.start(Dataset(settings.users, settings.seed))
        load_s, ready_s = system.load_seconds, time.monotonic() - began
        print(
            f"  {settings.users:,} users loaded in {load_s:.1f} s, ready in {ready_s:.1f} s",
            flush=True,
        )
        estimate_s = point_count(settings) * point_seconds(settings)
        if estimate_s * 1000 > 0.9 * (system.lease_until_ms - generate.now_ms()):
            notes.append(
                f"{settings.users:,} users: device leases, which run from the start of loading, "
                f"may have ended before the last point"
            )
            print(f"warning: {notes[-1]}", file=sys.stderr)
        load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
        client = next(spec for spec in system.workloads() if spec.batch == 1)
        figures = [await runner.measure(unloaded_spec(settings, client), UNLOADED, UNLOADED_LABEL)]
        for rate in settings.rates:
            spec = open_loop_spec(settings, client, rate.value)
            figures.append(await runner.measure(spec, SWEEP, rate.label))
        peak_rss = total_peak_rss_bytes(system.server_pids())
    finally:
        await system.stop()
    return SizeResult(settings.users, load_s, ready_s, peak_rss, load_average, figures)


async def run(settings: ScaleSettings, argv: Sequence[str]) -> ScaleResult:
    started_at = timestamp()
    machine = describe_machine()
    # Both data sets first: generating the large one uses every core and must not overlap
    # a measurement, and the two sizes' points end up as close in time as loading allows.
    for users in settings.sizes:
        await asyncio.to_thread(generate.ensure_cached, Dataset(users, settings.points.seed))
    # One system serves both sizes in turn (stop removes everything start made), so one
    # runner numbers the points of the whole run and charges CPU to the current server.
    system = SupernodeSystem()
    total = len(settings.sizes) * settings.points_per_size
    estimate_min = total * point_seconds(settings.points) / 60
    print(f"{total} points, about {estimate_min:.1f} min plus loading", flush=True)
    notes: list[str] = []
    with GeneratorPool(settings.points.processes) as pool:
        runner = PointRunner(pool, {system.name: system}, total)
        sizes = [
            await measure_size(runner, system, settings.for_size(users), notes)
            for users in settings.sizes
        ]
    return ScaleResult(settings, started_at, timestamp(), list(argv), machine, notes, sizes)


# ---------------------------------------------------------------------- report


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _verdict(ratio: Ratio) -> str:
    return {None: "n/a", True: "within", False: "over"}[ratio.within_target]


def _load_name(label: str) -> str:
    return f"unloaded ({label})" if label == UNLOADED_LABEL else label


def _ms(figure: Figure | None, field: str) -> str:
    return "n/a" if figure is None else format_ms(getattr(figure, field))


def scale_to_json(result: ScaleResult) -> dict[str, Any]:
    points = result.settings.points
    return {
        "run": {
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "command": result.command,
            "small_users": result.settings.small,
            "large_users": result.settings.large,
            "workload": "lookup",
            "rates": [rate.value for rate in points.rates],
            "seed": points.seed,
            "key_dist": points.key_dist,
            "arrivals": points.arrivals,
            "processes": points.processes,
            "connections": points.connections,
            "duration_s": points.duration_s,
            "warmup_s": points.warmup_s,
            "quick": points.quick,
            "target_p99_ratio": TARGET_RATIO,
            "machine": result.machine,
            "notes": result.notes,
        },
        "sizes": [
            {
                "users": size.users,
                "load_s": size.load_s,
                "ready_s": size.ready_s,
                "peak_rss_bytes": size.peak_rss_bytes,
                "load_average": size.load_average,
                "figures": [dataclasses.asdict(f) for f in size.figures],
            }
            for size in result.sizes
        ],
        "ratios": [
            {
                "load": r.load,
                "p50_ratio": r.p50,
                "p99_ratio": r.p99,
                "p99_within_target": r.within_target,
            }
            for r in result.ratios()
        ],
    }


_SIZE_COLUMNS: list[Column] = [
    ("load", lambda f: _load_name(f.rate_label)),
    ("ops/s", lambda f: format_rate(f.achieved_rate)),
    *LATENCY,
    *COST,
]


def markdown(result: ScaleResult) -> str:
    points = result.settings.points
    small, large = result.sizes
    header = [
        "load",
        f"p50 ms {small.users:,}",
        f"p50 ms {large.users:,}",
        "p50 ratio",
        f"p99 ms {small.users:,}",
        f"p99 ms {large.users:,}",
        "p99 ratio",
        f"p99 target <= {TARGET_RATIO:g}x",
    ]
    rows = [
        [
            _load_name(r.load),
            _ms(r.small, "p50_us"),
            _ms(r.large, "p50_us"),
            _times(r.p50),
            _ms(r.small, "p99_us"),
            _ms(r.large, "p99_us"),
            _times(r.p99),
            _verdict(r),
        ]
        for r in result.ratios()
    ]
    lines = [
        f"# Scale benchmark, {result.started_at}",
        "",
        f'Target: "Lookup p99 at 10M users <= {TARGET_RATIO:g} x at 10k users, same rate". '
        f"This run: {small.users:,} vs {large.users:,} users (seed {points.seed}), `Lookup` of "
        f"one user, keys {points.key_dist}, {points.arrivals} arrivals at the same absolute "
        f"rates for both sizes, {points.processes} generator process(es), "
        f"{points.duration_s:g} s per point after {points.warmup_s:g} s warm-up"
        f"{' (quick mode)' if points.quick else ''}.",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in result.machine.items()) + ".",
        "",
        "The sizes are measured one after the other with only one server loaded, so drift on",
        "a shared machine between them lands in the ratio: compare the load averages below.",
        "",
        "## Headline: large / small",
        "",
        *markdown_table(header, rows),
        "",
    ]
    lines += [f"- {note}" for note in result.notes]
    if result.notes:
        lines.append("")
    for size in result.sizes:
        lines += [
            f"## {size.users:,} users",
            "",
            f"Loaded in {size.load_s:,.1f} s (serving after {size.ready_s:,.1f} s); "
            f"server peak RSS {size.peak_rss_bytes / MIB:,.0f} MiB; load average "
            f"{size.load_average} when its points began.",
            "",
            *figure_table(size.figures, _SIZE_COLUMNS),
            "",
        ]
    if result.failed:
        lines += ["## Failed points", ""]
        lines += [f"- {users:,} users {f.rate_label}: {f.failure}" for users, f in result.failed]
        lines.append("")
    return "\n".join(lines)


def write_report(result: ScaleResult, out_root: Path) -> Path:
    directory = run_directory(out_root, result.started_at)
    directory.mkdir(parents=True)
    (directory / JSON_NAME).write_text(json.dumps(scale_to_json(result), indent=1) + "\n")
    (directory / MARKDOWN_NAME).write_text(markdown(result))
    return directory


def headline_lines(result: ScaleResult) -> list[str]:
    small, large = result.sizes
    lines = [
        f"lookup latency, {large.users:,} / {small.users:,} users "
        f"(target: p99 <= {TARGET_RATIO:g}x at the same rate):"
    ]
    lines += [
        f"  {_load_name(r.load):14s}  p50 {_times(r.p50):>7s}  p99 {_times(r.p99):>7s}  "
        f"{_verdict(r)}"
        for r in result.ratios()
    ]
    return lines


# ---------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description="Lookup latency at a small and a large directory size, same rates.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="CI mode: 200 and 2000 users, one rate, ~1 s points")
    add("--small", type=int, help=f"users in the small data set (default {FULL_SIZES[0]})")
    add("--large", type=int, help=f"users in the large data set (default {FULL_SIZES[1]})")
    add("--rates", help=f"absolute open-loop ops/s for both sizes (default {FULL_RATES})")
    add("--seed", type=int, default=1, help="data set seed")
    add("--duration", type=float, help="measured seconds per point (default 10; quick 1)")
    add("--warmup", type=float, help="unmeasured seconds before each point (default 2; quick 0.25)")
    add("--key-dist", choices=DISTRIBUTIONS, default=UNIFORM, help="which users are looked up")
    add("--processes", type=int, default=1, help="load-generator processes")
    add("--connections", type=int, default=4, help="client connections in total per point")
    add("--out", type=Path, default=RESULTS_DIR, help="results go to OUT/<timestamp>/")
    return parser


def _absolute_rates(text: str) -> list[Rate]:
    try:
        rates = parse_rates(text)
    except ValueError as exc:
        raise SetupError(f"--rates: {exc}") from exc
    if any(rate.relative for rate in rates):
        raise SetupError("--rates: give ops/s, not percentages: both sizes get the same load")
    return rates


def settings_from_args(argv: Sequence[str]) -> ScaleSettings:
    args = _parser().parse_args(argv)
    quick = bool(args.quick)
    small, large = QUICK_SIZES if quick else FULL_SIZES
    settings = ScaleSettings(
        small=args.small or small,
        large=args.large or large,
        points=Settings(
            users=args.small or small,  # replaced per size
            seed=args.seed,
            systems=[SupernodeSystem.name],
            duration_s=args.duration or (1.0 if quick else 10.0),
            warmup_s=args.warmup if args.warmup is not None else (0.25 if quick else 2.0),
            rates=_absolute_rates(args.rates or (QUICK_RATES if quick else FULL_RATES)),
            processes=args.processes,
            connections=args.connections,
            key_dist=args.key_dist,
            arrivals=POISSON,
            common=False,
            quick=quick,
            out=args.out,
        ),
    )
    if min(settings.small, settings.points.processes, settings.points.connections) < 1:
        raise SetupError("--small, --processes and --connections must be at least 1")
    if settings.large <= settings.small:
        raise SetupError("--large must be more users than --small")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from_args(argv)
        result = run_event_loop(run(settings, argv))
    except SetupError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    directory = write_report(result, settings.points.out)
    print()
    print("\n".join(headline_lines(result)))
    print(f"\nresults: {directory}")
    if result.failed:
        print(f"{len(result.failed)} point(s) failed; see {MARKDOWN_NAME}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
