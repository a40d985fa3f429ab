"""Every resource a node binds or opens at start-up, taken or unusable: the node exits 2
with one line on stderr naming the setting (its flag and environment variable) and what to
do, and no traceback (issue 17: a taken gRPC port printed two)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.process import PLAINTEXT, SupernodeProcess

_FREE = ("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--stun-listen", "")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupernodeProcess]:
    """One running node whose ports and data directory the refused starts collide with."""
    node = SupernodeProcess(tmp_path_factory.mktemp("running") / "data").start()
    yield node
    node.kill()


def refused(*args: str, wrapper: tuple[str, ...] = ()) -> str:
    """Run ``supernode serve`` expecting a refused start; returns its one error line."""
    done = subprocess.run(
        [*wrapper, sys.executable, "-m", "supernode.cli", "serve", PLAINTEXT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SUPERNODE_")},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("supernode: ")]
    assert len(lines) == 1, done.stderr
    # Besides it, at most the node's own log (the plaintext warning): nothing else.
    others = [line for line in done.stderr.splitlines() if line not in lines]
    assert all(" WARNING supernode serving PLAINTEXT" in line for line in others), done.stderr
    return lines[0]


def _port(address: object) -> str:
    return str(address).rpartition(":")[2]


def test_taken_grpc_port(running: SupernodeProcess, tmp_path: Path) -> None:
    line = refused("--data-dir", str(tmp_path), *_FREE, "--listen", running.grpc_target)
    assert "server.listen (--listen, SUPERNODE_LISTEN)" in line
    assert f"cannot bind {running.grpc_target}: address already in use" in line


def test_taken_metrics_port(running: SupernodeProcess, tmp_path: Path) -> None:
    metrics = running.metrics_url.split("/")[2]
    line = refused("--data-dir", str(tmp_path), *_FREE, "--metrics-listen", metrics)
    assert "server.metrics_listen (--metrics-listen, SUPERNODE_METRICS_LISTEN)" in line
    assert f"cannot bind {metrics}: address already in use" in line


def test_taken_stun_port(running: SupernodeProcess, tmp_path: Path) -> None:
    line = refused("--data-dir", str(tmp_path), *_FREE, "--stun-listen", running.stun_address)
    assert "server.stun_listen (--stun-listen, SUPERNODE_STUN_LISTEN)" in line
    assert "address already in use" in line


def test_data_dir_of_a_running_node(running: SupernodeProcess) -> None:
    line = refused("--data-dir", str(running.data_dir), *_FREE)
    assert "server.data_dir (--data-dir, SUPERNODE_DATA_DIR)" in line
    assert "in use by another running supernode" in line


# Root writes whatever a mode says: as root, the node runs without the capabilities that
# override file modes (util-linux's setpriv), so the modes apply as to any other user.
_AS_USER = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


@pytest.mark.parametrize(
    ("inside", "message"),
    [("data", "cannot be created (Permission denied)"), ("", "not writable by this user")],
)
def test_data_dir_not_writable(tmp_path: Path, inside: str, message: str) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    wrapper = _AS_USER if os.geteuid() == 0 else ()
    line = refused("--data-dir", str(read_only / inside), *_FREE, wrapper=wrapper)
    assert "server.data_dir (--data-dir, SUPERNODE_DATA_DIR)" in line
    assert message in line


def test_worker_metrics_port(tmp_path: Path) -> None:
    """With --workers, worker i serves its metrics on the metrics port + i."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(
            "--data-dir",
            str(tmp_path),
            *_FREE,
            "--workers",
            "2",
            "--metrics-listen",
            f"127.0.0.1:{port - 1}",
        )
    assert "server.metrics_listen (--metrics-listen, SUPERNODE_METRICS_LISTEN) +1" in line
    assert f"cannot bind 127.0.0.1:{port}: address already in use" in line


def test_unreachable_etcd(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        etcd = f"127.0.0.1:{closed.getsockname()[1]}"
        line = refused(
            "--data-dir",
            str(tmp_path),
            *_FREE,
            "--cluster-etcd-endpoints",
            etcd,
            "--cluster-etcd-timeout-seconds",
            "1",
        )
    assert "cluster.etcd_endpoints (--cluster-etcd-endpoints" in line
    assert "etcd is unreachable" in line and etcd in line


def test_address_that_is_not_host_port(tmp_path: Path) -> None:
    line = refused("--data-dir", str(tmp_path), *_FREE, "--stun-listen", "nohost")
    assert line == "supernode: server.stun_listen: 'nohost' is not host:port"


def test_worker_restart_on_a_taken_port_says_which_setting(tmp_path: Path) -> None:
    """A worker reports its own start-up error to the primary (on its ready pipe), which
    logs it naming the setting: here the port of worker 1's metrics, taken while the
    worker was being restarted."""
    metrics_port = _two_free_ports()
    node = SupernodeProcess(
        tmp_path / "data", "--workers", "2", "--metrics-listen", f"127.0.0.1:{metrics_port}"
    ).start()
    try:
        worker = node.workers[0]
        assert _port(worker["metrics"]) == str(metrics_port + 1)
        os.kill(int(str(worker["pid"])), signal.SIGKILL)
        node.wait_for("worker 1 exited")
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", metrics_port + 1))
            taken.listen()
            node.wait_for("worker 1 did not restart: worker 1: server.metrics_listen", 30)
        line = next(line for line in node.log if "did not restart" in line)
        assert f"cannot bind 127.0.0.1:{metrics_port + 1}: address already in use" in line
        assert not any("Traceback" in line for line in node.log), "".join(node.log)
    finally:
        node.kill()


def _two_free_ports() -> int:
    """A port P with P + 1 free too, both released (bounded tries)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two adjacent free ports on loopback")
