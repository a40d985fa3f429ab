"""The non-lookup benchmark scenarios run end to end in quick mode and produce figures
(never a timing threshold: these machines are shared)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_scenarios_produce_every_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scenarios", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = list(tmp_path.iterdir())
    data = json.loads((run / "scenarios.json").read_text())["results"]
    assert data["register_renew"]["count"] > 0 and data["register_renew"]["per_second"] > 0
    keep = data["keepalive_renew"]
    assert keep["count"] > 0 and keep["devices_online_at_300s_ttl"] == keep["per_second"] * 150
    watch = data["watch_notification_delay"]
    assert watch["client_send_to_event"]["count"] == watch["changes"]
    assert watch["server_commit_to_write"]["count"] >= watch["changes"]
    assert data["p2p_connect_direct"]["path"] == ["direct"]
    assert data["p2p_connect_relay"]["path"] == ["relay"]
    assert data["p2p_connect_relay"]["count"] == data["p2p_connect_direct"]["count"] == 2
    assert "registrations/s" in (run / "scenarios.md").read_text()
