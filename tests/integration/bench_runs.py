"""Running a benchmark module the way a user does, in its quick mode, for the suite's tests:
its exit status, what it printed, and the JSON report it saved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_quick_and_load(module: str, save_dir: Path, timeout_s: float = 140) -> tuple[str, Any]:
    """``python -m module --quick --save --save-dir save_dir``: its stdout and its saved
    report (exactly one JSON file, beside a non-empty Markdown one). Fails the test with the
    output's tail if the run fails."""
    command = [sys.executable, "-m", module, "--quick", "--save", "--save-dir", str(save_dir)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (report,) = save_dir.glob("*.json")
    assert report.with_suffix(".md").stat().st_size > 0
    return done.stdout, json.loads(report.read_text())
