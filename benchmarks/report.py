"""Write a run's results: ``results.json`` (every figure), ``results.md`` (tables and the
headline) and the PNG charts, into ``<out>/<timestamp>/``.

The Markdown is meant to be pasted into a review: tables by phase, latencies in ms, server
CPU per 1000 operations, and failures listed rather than dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import plots
from benchmarks.figures import Figure, RunResult, run_to_json
from benchmarks.headline import Headline, headlines
from benchmarks.plan import COMMON, SATURATION, SWEEP, UNLOADED

RESULTS_DIR = Path(__file__).resolve().parent / "results"
JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"
THROUGHPUT_CHART = "latency_vs_throughput.png"
SPECTRUM_CHART = "percentile_spectrum.png"
MIB = 1 << 20


def run_directory(out_root: Path, started_at: str) -> Path:
    """``out_root/<started_at as 20250101-093512>``, made unique if it already exists."""
    stamp = started_at.replace("-", "").replace(":", "").replace("T", "-")[:15]
    path = out_root / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = out_root / f"{stamp}-{suffix}"
    return path


def write_report(run: RunResult, out_root: Path = RESULTS_DIR) -> Path:
    """Write every file of the run and return its directory."""
    directory = run_directory(out_root, run.info.started_at)
    directory.mkdir(parents=True)
    data = run_to_json(run)
    data["headline"] = [
        {"key": h.key, "label": h.label, "value": h.value, "unit": h.unit, "detail": h.detail}
        for h in headlines(run)
    ]
    (directory / JSON_NAME).write_text(json.dumps(data, indent=1) + "\n")
    plots.latency_vs_throughput(run, directory / THROUGHPUT_CHART)
    plots.percentile_spectrum(run, directory / SPECTRUM_CHART)
    (directory / MARKDOWN_NAME).write_text(markdown(run))
    return directory


# ---------------------------------------------------------------------- Markdown


def format_ms(us: float) -> str:
    return f"{us / 1000:.3f}" if us < 10_000 else f"{us / 1000:,.1f}"


def format_rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _cpu(figure: Figure) -> str:
    value = figure.server_cpu_s_per_1000_ops
    return "" if value is None else f"{value:.3f}"


def _errors(figure: Figure) -> str:
    if figure.failure is not None:
        return "FAILED"
    if not figure.errors:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in figure.error_kinds.items())
    return f"{figure.errors} ({kinds})"


Column = tuple[str, Callable[[Figure], str]]

_WHO: list[Column] = [("system", lambda f: f.system), ("workload", lambda f: f.workload)]
LATENCY: list[Column] = [
    ("p50 ms", lambda f: format_ms(f.p50_us)),
    ("p90 ms", lambda f: format_ms(f.p90_us)),
    ("p99 ms", lambda f: format_ms(f.p99_us)),
    ("p99.9 ms", lambda f: format_ms(f.p999_us)),
    ("max ms", lambda f: format_ms(f.max_us)),
]
_THROUGHPUT: list[Column] = [
    ("ops/s", lambda f: format_rate(f.achieved_rate)),
    ("keys/s", lambda f: format_rate(f.keys_per_s)),
]
COST: list[Column] = [
    ("server CPU s / 1000 ops", _cpu),
    ("errors", _errors),
]
_OPEN_LOOP: list[Column] = [
    *_WHO,
    ("load", lambda f: f.rate_label),
    ("target ops/s", lambda f: format_rate(f.target_rate)),
    *_THROUGHPUT,
    *LATENCY,
    ("unsent", lambda f: str(f.unsent)),
    ("send lag p99 ms", lambda f: format_ms(f.send_lag_p99_us)),
    *COST,
]
SECTIONS: list[tuple[str, str, list[Column]]] = [
    (
        UNLOADED,
        "Unloaded latency (ping-pong: one request at a time)",
        [*_WHO, *_THROUGHPUT, *LATENCY, *COST],
    ),
    (
        SATURATION,
        "Maximum throughput (closed loop, fixed requests in flight)",
        [*_WHO, ("in flight", lambda f: str(f.concurrency)), *_THROUGHPUT, *LATENCY, *COST],
    ),
    (SWEEP, "Latency vs offered load (open loop, % of each workload's maximum)", _OPEN_LOOP),
    (
        COMMON,
        "Common load (open loop, the same ops/s for every system of a batch size)",
        _OPEN_LOOP,
    ),
]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def figure_table(figures: Sequence[Figure], columns: Sequence[Column]) -> list[str]:
    """One row per figure, one cell per column."""
    rows = [[cell(f) for _, cell in columns] for f in figures]
    return markdown_table([name for name, _ in columns], rows)


def _headline_lines(items: list[Headline]) -> list[str]:
    return markdown_table(["figure", "value", "from"], [[h.label, h.text, h.detail] for h in items])


def markdown(run: RunResult) -> str:
    info = run.info
    lines = [
        f"# Lookup benchmark, {info.started_at}",
        "",
        f"{info.users:,} users (seed {info.seed}), keys {info.key_dist}, "
        f"{info.arrivals} arrivals, {info.processes} generator process(es), "
        f"{info.duration_s:g} s per point after {info.warmup_s:g} s warm-up"
        f"{' (quick mode)' if info.quick else ''}. Systems: {', '.join(info.systems)}.",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.machine.items()) + ".",
        "",
        "Latency is measured from each request's scheduled send time (open loop) or its",
        "send time (closed loop and ping-pong). Compare systems within this run only:",
        "absolute figures drift between runs on a shared machine, ratios much less.",
        "",
        "## Headline",
        "",
        *_headline_lines(headlines(run)),
        "",
    ]
    for note in info.notes:
        lines.append(f"- {note}")
    if info.notes:
        lines.append("")
    for phase, title, columns in SECTIONS:
        figures = [f for f in run.figures if f.phase == phase]
        if not figures:
            continue
        lines += [f"## {title}", "", *figure_table(figures, columns), ""]
    if run.memory:
        rows = [
            [
                m.system,
                f"{m.peak_rss_bytes / MIB:,.0f}",
                f"{m.users:,}",
                f"{m.per_million_users_bytes / MIB:,.0f}",
            ]
            for m in run.memory
        ]
        header = ["system", "peak RSS MiB", "users", "MiB per 1M users"]
        lines += ["## Server memory (peak RSS, VmHWM)", "", *markdown_table(header, rows), ""]
    failed = [f for f in run.figures if f.failure is not None]
    if failed:
        lines += ["## Failed points", ""]
        lines += [
            f"- {f.system} {f.workload} {f.phase} {f.rate_label}: {f.failure}" for f in failed
        ]
        lines.append("")
    lines += [
        "## Charts",
        "",
        f"![latency vs throughput]({THROUGHPUT_CHART})",
        "",
        "Each line is one system's workload swept from low load to past its maximum: p50",
        "solid, p99 dashed, against the throughput actually achieved. A curve that turns up",
        "steeply has reached its capacity; further right and lower is better.",
        "",
        f"![percentile spectrum]({SPECTRUM_CHART})",
        "",
        "Latency at every percentile at one load; the tail (right side) shows queueing and",
        "pauses that a p99 alone hides.",
        "",
    ]
    return "\n".join(lines)
