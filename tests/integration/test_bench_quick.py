"""The benchmark suite end to end in quick mode: every selected system yields figures with
both generators (the Python one's three phases, and the native one's saturation point,
judged by the server's own counters) and every report file is written. Timings are never
asserted: they depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import (
    JSON_NAME,
    MARKDOWN_NAME,
    NATIVE_CHART,
    SPECTRUM_CHART,
    THROUGHPUT_CHART,
)

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS_DIR = ROOT / "benchmarks" / "systems"
# The baselines join as their modules land; the supernode and its ceiling always run.
SYSTEMS = ["supernode", "grpc-echo"] + [
    name for name in ("etcd", "redis") if (SYSTEMS_DIR / f"{name}.py").exists()
]
PHASES = {"unloaded", "saturation", "sweep", "native-saturation"}
GENERATORS = {"python", "h2load", "redis-benchmark"}
NATIVE_HEADLINES = {
    "native_lookup_vs_echo_per_process",
    "native_lookup_vs_etcd_range_per_machine",
    "native_lookup_many_100_vs_etcd_txn_100",
    "native_lookup_vs_redis_get_per_machine",
}


def _failed_points(out: Path) -> str:
    """The report's list of failed points, if the run got as far as writing it."""
    reports = list(out.glob(f"*/{MARKDOWN_NAME}"))
    text = reports[0].read_text() if reports else ""
    _, found, rest = text.partition("## Failed points")
    return found + rest.split("\n## ", 1)[0] + "\n" if found else ""


@pytest.mark.slow
def test_quick_benchmark_measures_every_system_and_writes_the_report(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "benchmarks.run", "--quick",
        "--systems", ",".join(SYSTEMS), "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        _failed_points(tmp_path) + done.stdout[-3000:] + done.stderr[-3000:]
    )

    (directory,) = tmp_path.iterdir()
    for name in (JSON_NAME, MARKDOWN_NAME, THROUGHPUT_CHART, SPECTRUM_CHART, NATIVE_CHART):
        assert (directory / name).stat().st_size > 0, name
    data = json.loads((directory / JSON_NAME).read_text())
    figures = data["figures"]
    for system in SYSTEMS:
        mine = [f for f in figures if f["system"] == system]
        assert mine, f"no figures for {system}"
        assert {f["phase"] for f in mine} == PHASES, system
        assert all(f["failure"] is None and f["completed"] > 0 for f in mine), system
        python = {f["workload"] for f in mine if f["generator"] == "python"}
        native = {f["workload"] for f in mine if f["generator"] != "python"}
        assert native and native <= python, (system, python, native)
        # The server itself counted an OK answer for every request the generator completed.
        assert all(f["server_ok"] >= f["completed"] for f in mine if f["generator"] != "python"), (
            system
        )
    assert {f["generator"] for f in figures} == GENERATORS
    keys = {h["key"] for h in data["headline"] if h["value"] is not None}
    assert keys >= {"lookup_max_vs_echo", "unloaded_p50_vs_echo", *NATIVE_HEADLINES}
    assert data["native_leads"], "no sentence says who is ahead"
    markdown = (directory / MARKDOWN_NAME).read_text()
    assert all(system in markdown for system in SYSTEMS)
