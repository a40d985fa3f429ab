"""The cluster benchmark end to end in quick mode: an older revision's worktree, both single
nodes, a 3-node cluster with its etcd, every workload measured, the report saved, and
nothing left behind. Timings are never asserted: they depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cluster import plan
from benchmarks.systems.base import ClientSpec

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {
    ("before", "lookup"),
    ("after", "lookup"),
    ("cluster", "lookup-local"),
    ("cluster", "lookup-forwarded"),
    ("cluster", "lookup-many-10-local"),
    ("cluster", "lookup-many-10-mixed"),
}
QUICK_CONCURRENCY = (1, 4)


def test_rounds_alternate_the_systems_at_each_concurrency() -> None:
    before, after = ClientSpec("before", "lookup", "x"), ClientSpec("after", "lookup", "y")
    points = plan([before, after], (1, 16), rounds=2)
    assert [(p.round, p.concurrency, p.client.system) for p in points] == [
        (r, c, s) for r in (1, 2) for c in (1, 16) for s in ("before", "after")
    ]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_cluster_benchmark_measures_every_workload_and_cleans_up(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.cluster", "--quick", "--save",
               "--save-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| comparison |" in done.stdout

    (report,) = tmp_path.glob("*.json")
    assert report.with_suffix(".md").stat().st_size > 0
    data = json.loads(report.read_text())
    rows = {(r["system"], r["workload"], r["concurrency"]) for r in data["rows"]}
    assert rows == {(*w, c) for w in WORKLOADS for c in QUICK_CONCURRENCY}
    for figure in data["figures"]:
        where = (figure["system"], figure["workload"], figure["concurrency"])
        assert figure["failure"] is None and figure["errors"] == 0, where
        assert figure["completed"] > 0, where
    assert len(data["comparisons"]) == 4 * len(QUICK_CONCURRENCY)
    # The forwarded workloads really were forwarded by node 0.
    assert data["run"]["forwarded_calls"]["Lookup"] > 0
    assert data["run"]["forwarded_calls"]["LookupMany"] > 0

    tree = data["run"]["before_tree"]
    assert not Path(tree).exists()
    worktrees = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert tree not in worktrees
