"""Write a run's results: ``results.json`` (every figure), ``results.md`` (tables and the
headline) and the PNG charts, into ``<out>/<timestamp>/``.

The Markdown is meant to be pasted into a review: tables by phase, latencies in ms, server
CPU per 1000 operations, and failures listed rather than dropped. The native generator's
points get their own tables (per machine and per server process, server CPU per operation,
and the OK answers each server counted against the requests the generator completed), a
table of both generators' maxima side by side, and the sentences saying which system is
ahead (:func:`benchmarks.headline.native_leads`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import plots
from benchmarks.figures import Figure, RunResult, run_to_json
from benchmarks.headline import Headline, headlines, native_leads
from benchmarks.plan import (
    COMMON,
    NATIVE_SATURATION,
    NATIVE_UNLOADED,
    SATURATION,
    SWEEP,
    UNLOADED,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"
THROUGHPUT_CHART = "latency_vs_throughput.png"
SPECTRUM_CHART = "percentile_spectrum.png"
NATIVE_CHART = "native_throughput.png"
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


def save_run(out_root: Path, name: str, document: dict[str, Any], markdown: str) -> Path:
    """Write ``name.json`` and ``name.md`` into a new run directory under ``out_root``
    (stamped now), print the Markdown and where it went; the directory."""
    started = datetime.datetime.now().isoformat(timespec="seconds")
    directory = run_directory(out_root, started)
    directory.mkdir(parents=True)
    (directory / f"{name}.json").write_text(json.dumps(document, indent=1))
    (directory / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"results: {directory}")
    return directory


def write_report(run: RunResult, out_root: Path = RESULTS_DIR) -> Path:
    """Write every file of the run and return its directory."""
    directory = run_directory(out_root, run.info.started_at)
    directory.mkdir(parents=True)
    data = run_to_json(run)
    data["headline"] = [
        {"key": h.key, "label": h.label, "value": h.value, "unit": h.unit, "detail": h.detail}
        for h in headlines(run)
    ]
    data["native_leads"] = native_leads(run)
    (directory / JSON_NAME).write_text(json.dumps(data, indent=1) + "\n")
    plots.latency_vs_throughput(run, directory / THROUGHPUT_CHART)
    plots.percentile_spectrum(run, directory / SPECTRUM_CHART)
    plots.native_throughput(run, directory / NATIVE_CHART)
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


def _optional(value: float | None, form: str) -> str:
    return "" if value is None else format(value, form)


def _answered(figure: Figure) -> str:
    """OK answers the server counted / requests the generator completed."""
    return "" if figure.server_ok is None else f"{figure.server_ok:,} / {figure.completed:,}"


_NATIVE: list[Column] = [
    *_WHO,
    ("generator", lambda f: f.generator),
    ("in flight", lambda f: str(f.concurrency)),
    ("connections", lambda f: str(f.connections)),
    ("ops/s per machine", lambda f: format_rate(f.achieved_rate)),
    ("keys/s per machine", lambda f: format_rate(f.keys_per_s)),
    ("server processes", lambda f: str(f.server_processes)),
    ("ops/s per process", lambda f: format_rate(f.rate_per_process)),
    ("mean ms", lambda f: format_ms(f.mean_us)),
    ("p50 ms", lambda f: format_ms(f.p50_us)),
    ("p99 ms", lambda f: format_ms(f.p99_us)),
    ("p99.9 ms", lambda f: format_ms(f.p999_us)),
    ("server CPU µs / op", lambda f: _optional(f.server_cpu_us_per_op, ",.1f")),
    ("server OK / done", _answered),
    ("errors", _errors),
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
    (
        NATIVE_UNLOADED,
        "Native generator, unloaded (h2load / redis-benchmark, one request at a time)",
        _NATIVE,
    ),
    (
        NATIVE_SATURATION,
        "Native generator, maximum throughput (h2load / redis-benchmark, closed loop)",
        _NATIVE,
    ),
]
NATIVE_NOTE = [
    "The native generator sends one fixed request per point (single-key points read one",
    "user again and again) and sees no answer's content: each point is judged by the",
    "server's own counters (supernode_rpc_requests_total of every serving process, etcd's",
    "grpc_server_handled_total, the echo server's echo_requests_total, Redis's INFO",
    "commandstats and keyspace hits/misses), which count warm-up calls too; a point whose",
    "server counted fewer OK answers than requests completed is failed, not a throughput.",
    "Server CPU per op is the serving processes' CPU over warm-up and run divided by the",
    "OK answers counted over the same span. Per process = per machine / serving processes.",
    "",
]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def figure_table(figures: Sequence[Figure], columns: Sequence[Column]) -> list[str]:
    """One row per figure, one cell per column."""
    rows = [[cell(f) for _, cell in columns] for f in figures]
    return markdown_table([name for name, _ in columns], rows)


def generator_table(run: RunResult) -> list[str]:
    """Each workload's maximum with both generators: where the Python generator, not the
    server, set the figure, the native one is far ahead."""
    python = {f.key: f for f in run.figures if f.phase == SATURATION and f.failure is None}
    native = {f.key: f for f in run.figures if f.phase == NATIVE_SATURATION and f.failure is None}
    rows = []
    for key, slow in python.items():
        fast = native.get(key)
        if fast is None:
            continue
        ratio = fast.achieved_rate / slow.achieved_rate if slow.achieved_rate else None
        rows.append(
            [*key, format_rate(slow.achieved_rate), format_rate(fast.achieved_rate),
             _optional(ratio, ".2f")]
        )  # fmt: skip
    if not rows:
        return []
    header = ["system", "workload", "Python ops/s", "native ops/s", "native / Python"]
    return ["## Maximum throughput by generator", "", *markdown_table(header, rows), ""]


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
    leads = native_leads(run)
    if leads:
        lines += ["## Who is ahead (native generator, maximum throughput)", ""]
        lines += [f"- {lead}" for lead in leads]
        lines.append("")
    for phase, title, columns in SECTIONS:
        figures = [f for f in run.figures if f.phase == phase]
        if not figures:
            continue
        lines += [f"## {title}", "", *figure_table(figures, columns), ""]
        if phase == NATIVE_UNLOADED or (
            phase == NATIVE_SATURATION and not any(f.phase == NATIVE_UNLOADED for f in run.figures)
        ):
            lines += NATIVE_NOTE
    lines += generator_table(run)
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
        f"![native throughput]({NATIVE_CHART})",
        "",
        "The native generator's maximum throughput of every workload: keys/s per machine",
        "(the Python generator's maximum beside it, hollow), keys/s per serving process,",
        "and server CPU per key.",
        "",
    ]
    return "\n".join(lines)
