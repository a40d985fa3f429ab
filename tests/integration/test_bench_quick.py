"""The benchmark suite end to end in quick mode: every selected system yields figures and
every report file is written. Timings are never asserted: they depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import JSON_NAME, MARKDOWN_NAME, SPECTRUM_CHART, THROUGHPUT_CHART

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS_DIR = ROOT / "benchmarks" / "systems"
# The baselines join as their modules land; the supernode and its ceiling always run.
SYSTEMS = ["supernode", "grpc-echo"] + [
    name for name in ("etcd", "redis") if (SYSTEMS_DIR / f"{name}.py").exists()
]
PHASES = {"unloaded", "saturation", "sweep"}


@pytest.mark.slow
def test_quick_benchmark_measures_every_system_and_writes_the_report(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "benchmarks.run", "--quick",
        "--systems", ",".join(SYSTEMS), "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (directory,) = tmp_path.iterdir()
    for name in (JSON_NAME, MARKDOWN_NAME, THROUGHPUT_CHART, SPECTRUM_CHART):
        assert (directory / name).stat().st_size > 0, name
    data = json.loads((directory / JSON_NAME).read_text())
    figures = data["figures"]
    for system in SYSTEMS:
        mine = [f for f in figures if f["system"] == system]
        assert mine, f"no figures for {system}"
        assert {f["phase"] for f in mine} == PHASES, system
        assert all(f["failure"] is None and f["completed"] > 0 for f in mine), system
    assert {h["key"] for h in data["headline"]} >= {"lookup_max_vs_echo", "unloaded_p50_vs_echo"}
    markdown = (directory / MARKDOWN_NAME).read_text()
    assert all(system in markdown for system in SYSTEMS)
