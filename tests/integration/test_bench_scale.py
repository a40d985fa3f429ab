"""The scale benchmark end to end in quick mode: both sizes are loaded and measured in one
run and the report is written. Timings and the ratio's target are never asserted: they
depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scale import JSON_NAME, MARKDOWN_NAME, QUICK_SIZES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_quick_scale_benchmark_measures_both_sizes_and_writes_the_report(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.scale", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (directory,) = tmp_path.iterdir()
    for name in (JSON_NAME, MARKDOWN_NAME):
        assert (directory / name).stat().st_size > 0, name
    data = json.loads((directory / JSON_NAME).read_text())
    assert [size["users"] for size in data["sizes"]] == list(QUICK_SIZES)
    for size in data["sizes"]:
        figures = size["figures"]
        assert {f["phase"] for f in figures} == {"unloaded", "sweep"}, size["users"]
        for figure in figures:
            assert figure["failure"] is None and figure["errors"] == 0, figure["rate_label"]
            assert figure["completed"] > 0, figure["rate_label"]
