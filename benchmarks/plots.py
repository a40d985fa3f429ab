"""The two charts of a run, drawn to PNG with matplotlib's Agg renderer (no display needed).

``latency_vs_throughput.png``: the open-loop sweep of every system and workload (one colour
family per system), p50 solid and p99 dashed, against the throughput actually achieved.
Log-log: systems differ by orders of magnitude in ops/s (a batch call carries 100 keys) and
in tail latency.

``percentile_spectrum.png``: the whole latency distribution at one load that every system
sustains (the ``common`` phase; without it, each system at 50 % of its own maximum), one
panel per batch size, x = 1/(1-p) on a log scale so the tail gets room.

``native_throughput.png``: the native generator's maximum of every workload, one bar row
each: keys/s per machine (with the Python generator's maximum as a hollow bar), keys/s per
serving process, and server CPU per key; log scales, since Redis and a Python server differ
by more than ten times.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as Chart

from benchmarks import histogram as hist
from benchmarks.figures import Figure, RunResult
from benchmarks.plan import COMMON, NATIVE_SATURATION, SATURATION, SWEEP

_MARKERS = {1: "o", 10: "s", 100: "^"}
# One colour family per system; a system's workloads are shades of it, darkest first.
_FAMILIES = ("Blues", "Oranges", "Greens", "Reds", "Purples", "Greys")
_PERCENTILE_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)
_DPI = 120


def _save(fig: Chart, path: Path) -> Path:
    """Render with Agg explicitly: no pyplot, so no global state and no display lookup."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    return path


def _colors(systems: list[str]) -> dict[str, str]:
    palette = itertools.cycle(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    return {system: next(palette) for system in systems}


def _shades(run: RunResult, keys: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
    families = dict(zip(run.info.systems, itertools.cycle(_FAMILIES), strict=False))
    by_system: dict[str, list[str]] = defaultdict(list)
    for system, workload in keys:
        by_system[system].append(workload)
    shades: dict[tuple[str, str], object] = {}
    for system, workloads in by_system.items():
        cmap = matplotlib.colormaps[families.get(system, "Greys")]
        for index, workload in enumerate(workloads):
            shades[(system, workload)] = cmap(0.9 - 0.45 * index / max(1, len(workloads) - 1))
    return shades


def _series(figures: list[Figure]) -> dict[tuple[str, str], list[Figure]]:
    """Points per workload in sweep order (offered load), whatever throughput they reached."""
    series: dict[tuple[str, str], list[Figure]] = defaultdict(list)
    for figure in figures:
        series[figure.key].append(figure)
    for points in series.values():
        points.sort(key=lambda f: f.target_rate or 0.0)
    return series


def latency_vs_throughput(run: RunResult, path: Path) -> Path:
    points = [f for f in run.figures if f.phase == SWEEP and f.failure is None and f.completed]
    series_by_key = _series(points)
    shades = _shades(run, list(series_by_key))
    fig = Chart(figsize=(11, 6.5))
    ax = fig.subplots()
    for (system, workload), series in series_by_key.items():
        x = [f.achieved_rate for f in series]
        style: dict[str, Any] = {
            "color": shades[(system, workload)],
            "marker": _MARKERS.get(series[0].batch, "D"),
            "markersize": 4,
        }
        ax.plot(x, [f.p50_us / 1000 for f in series], "-", label=f"{system} {workload}", **style)
        ax.plot(x, [f.p99_us / 1000 for f in series], "--", alpha=0.7, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (operations/s; a batch operation fetches many keys)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title("Latency vs throughput, open loop: p50 solid, p99 dashed")
    ax.grid(True, which="both", alpha=0.3)
    if points:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def spectrum_figures(run: RunResult) -> tuple[list[Figure], str]:
    """The points to compare and a caption: the common load, else 50 % of each maximum."""
    common = [f for f in run.figures if f.phase == COMMON and f.completed]
    if common:
        return common, "at a common load (same ops/s for every system of a batch size)"
    half = [f for f in run.figures if f.phase == SWEEP and f.rate_label == "50%" and f.completed]
    return half, "at 50% of each system's own maximum"


def _to_x(percentile: float) -> float:
    return 1.0 / (1.0 - percentile / 100.0)


def percentile_spectrum(run: RunResult, path: Path) -> Path:
    figures, caption = spectrum_figures(run)
    batches = sorted({f.batch for f in figures}) or [1]
    colors = _colors(run.info.systems)
    fig = Chart(figsize=(5.5 * len(batches), 5))
    axes = fig.subplots(1, len(batches), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        for figure in sorted((f for f in figures if f.batch == batch), key=lambda f: f.key):
            points = [(p, v) for p, v in hist.spectrum(hist.decode(figure.histogram)) if p < 100]
            if not points:
                continue
            label = f"{figure.system} {figure.workload} @ {figure.achieved_rate:,.0f}/s"
            ax.plot(
                [_to_x(p) for p, _ in points],
                [v / 1000 for _, v in points],
                color=colors.get(figure.system, "black"),
                label=label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([_to_x(p) for p in _PERCENTILE_TICKS])
        ax.set_xticklabels([f"{p:g}%" for p in _PERCENTILE_TICKS])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{batch} key{'s' if batch > 1 else ''} per operation")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Latency percentile spectrum {caption}")
    fig.tight_layout()
    return _save(fig, path)


def native_throughput(run: RunResult, path: Path) -> Path:
    native = [
        f for f in run.figures if f.phase == NATIVE_SATURATION and f.failure is None and f.completed
    ]
    order = {system: index for index, system in enumerate(run.info.systems)}
    native.sort(key=lambda f: (f.batch, order.get(f.system, len(order)), f.workload))
    python = {f.key: f for f in run.figures if f.phase == SATURATION and f.failure is None}
    colors = _colors(run.info.systems)
    fig = Chart(figsize=(15, 1.2 + 0.35 * max(1, len(native))))
    axes = fig.subplots(1, 3, sharey=True)
    rows = list(range(len(native)))
    names = [f"{f.system} {f.workload}" for f in native]
    bar_colors = [colors.get(f.system, "black") for f in native]
    per_key_cpu = [
        (f.server_cpu_us_per_op or 0.0) / f.batch for f in native
    ]  # 0 when not measured: no bar
    panels: list[tuple[Any, list[float], str]] = [
        (axes[0], [f.keys_per_s for f in native], "keys/s per machine (hollow: Python generator)"),
        (axes[1], [f.keys_per_s / f.server_processes for f in native], "keys/s per server process"),
        (axes[2], per_key_cpu, "server CPU µs per key"),
    ]
    for ax, values, title in panels:
        ax.barh(rows, values, color=bar_colors)
        if any(values):
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    slow = [python[f.key].keys_per_s if f.key in python else 0.0 for f in native]
    axes[0].barh(rows, slow, fill=False, edgecolor="black", height=0.5)
    axes[0].set_yticks(rows)
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("Native generator (h2load; redis-benchmark for Redis): maximum throughput")
    fig.tight_layout()
    return _save(fig, path)
