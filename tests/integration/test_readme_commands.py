"""Acceptance 1: the README's run command starts a serving supernode with no other step."""

import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def test_make_run_serves(tmp_path: Path) -> None:
    args = (
        "--listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --stun-listen 127.0.0.1:0 "
        f"--data-dir {tmp_path / 'data'}"
    )
    process = subprocess.Popen(
        ["make", "-C", str(REPO), "run", f"RUN_ARGS={args}"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ready: dict[str, object] = {}
    log: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            match = re.search(r"supernode ready (\{.*\})", line)
            if match:
                ready.update(json.loads(match.group(1)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = 120.0
        while not ready and process.poll() is None and deadline > 0:
            reader.join(0.1)
            deadline -= 0.1
        assert ready, "make run never became ready:\n" + "".join(log)
        with grpc.insecure_channel(str(ready["grpc"])) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=10) as response:
            assert b"supernode_accounts" in response.read()
        assert (tmp_path / "data" / "CURRENT").exists()  # the embedded RocksDB lives there
        os.kill(int(ready["pid"]), signal.SIGTERM)  # type: ignore[call-overload]
        assert process.wait(30) == 0  # make passes on the supernode's clean exit
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
