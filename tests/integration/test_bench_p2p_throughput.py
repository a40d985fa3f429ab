"""The P2P throughput benchmark runs end to end on 1 MiB and produces every figure (never a
timing threshold: these machines are shared); each transfer's SHA-256 was checked by the
callee, or the run would have failed."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_throughput_runs_on_both_paths_and_placements(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.p2p_throughput", "--mib", "1", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = list(tmp_path.iterdir())
    transfers = json.loads((run / "p2p_throughput.json").read_text())["transfers"]
    assert {(t["path"], t["placement"]) for t in transfers} == {
        (path, placement)
        for path in ("direct", "relay")
        for placement in ("one-process", "two-processes")
    }
    for transfer in transfers:
        assert transfer["bytes"] == 1 << 20
        assert transfer["mb_per_second"] > 0 and transfer["cpu_seconds"] > 0
        assert transfer["server_cpu_seconds"] >= 0
    assert "MB per peers' CPU-second" in (run / "p2p_throughput.md").read_text()


def test_unknown_path_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.p2p_throughput", "--paths", "carrier-pigeon"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--paths: choose from direct, relay" in result.stderr
