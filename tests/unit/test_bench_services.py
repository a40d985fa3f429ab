"""Pure parts of the baseline-server helpers: ports, command lines, batching, data items."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from benchmarks.services import (
    DebianPackage,
    ServiceError,
    _all_pids,
    apt_commands,
    ensure_installed,
    free_ports,
    split_target,
    stop_new_processes,
    take,
)
from benchmarks.systems.base import ClientSpec
from benchmarks.systems.etcd import EtcdClient, etcd_command, txn_chunks
from benchmarks.systems.redis import RedisClient, redis_command


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_split_target() -> None:
    assert split_target("127.0.0.1:2379") == ("127.0.0.1", 2379)
    for bad in ("127.0.0.1", ":80", "host:port"):
        with pytest.raises(ValueError):
            split_target(bad)


def test_apt_commands_update_once_then_install_without_recommends() -> None:
    first = apt_commands("redis-server", update=True)
    assert [command[-1] for command in first] == ["update", "redis-server"]
    assert first[1][first[1].index("install") :] == [
        "install",
        "-y",
        "--no-install-recommends",
        "redis-server",
    ]
    assert all(command[0] == "apt-get" for command in first)
    assert [command[-1] for command in apt_commands("etcd-server", update=False)] == ["etcd-server"]


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_etcd_command_uses_our_ports_dir_and_limits() -> None:
    argv = etcd_command("/usr/bin/etcd", Path("/tmp/x"), 4001, 4002, "127.0.0.1")
    assert argv[0] == "/usr/bin/etcd"
    assert _flag(argv, "--listen-client-urls") == "http://127.0.0.1:4001"
    assert _flag(argv, "--advertise-client-urls") == "http://127.0.0.1:4001"
    assert _flag(argv, "--listen-peer-urls") == "http://127.0.0.1:4002"
    assert _flag(argv, "--initial-cluster") == "bench=http://127.0.0.1:4002"
    assert _flag(argv, "--data-dir").startswith("/tmp/x/")
    assert int(_flag(argv, "--max-txn-ops")) >= 500
    assert int(_flag(argv, "--quota-backend-bytes")) >= 8 * 1024**3
    assert _flag(argv, "--auto-compaction-retention") == "0"
    assert not any("2379" in arg or "2380" in arg for arg in argv)


def test_redis_command_is_foreground_loopback_and_not_persistent() -> None:
    argv = redis_command("/usr/bin/redis-server", Path("/tmp/y"), 4003, "127.0.0.1")
    assert _flag(argv, "--port") == "4003"
    assert _flag(argv, "--bind") == "127.0.0.1"
    assert _flag(argv, "--dir") == "/tmp/y"
    assert _flag(argv, "--daemonize") == "no"
    assert _flag(argv, "--save") == ""
    assert _flag(argv, "--appendonly") == "no"


def test_txn_chunks_respect_op_and_byte_limits() -> None:
    items = [(f"k{i}", b"v" * 10) for i in range(25)]  # 12-13 bytes each
    chunks = list(txn_chunks(items, max_ops=10, max_bytes=10_000))
    assert [len(c) for c in chunks] == [10, 10, 5]
    chunks = list(txn_chunks(items, max_ops=100, max_bytes=50))
    assert all(sum(len(k) + len(v) for k, v in c) <= 50 for c in chunks)
    assert [pair for c in chunks for pair in c] == items
    # A pair bigger than the byte limit still goes out alone, never an empty chunk.
    assert list(txn_chunks([("big", b"x" * 100)], max_ops=10, max_bytes=50)) == [
        [("big", b"x" * 100)]
    ]
    assert list(txn_chunks([], max_ops=10, max_bytes=50)) == []


def test_take_batches_an_iterator() -> None:
    iterator = iter([(str(i), b"") for i in range(5)])
    assert len(take(iterator, 3)) == 3
    assert len(take(iterator, 3)) == 2
    assert take(iterator, 3) == []


def test_clients_refuse_unknown_workloads() -> None:
    with pytest.raises(ValueError):
        EtcdClient(ClientSpec("etcd", "get", "127.0.0.1:1"))
    with pytest.raises(ValueError):
        RedisClient(ClientSpec("redis", "range-serializable", "127.0.0.1:1"))


def test_install_without_root_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    missing = DebianPackage("no-such-package", "no-such-binary-for-bench-tests", "none")
    with pytest.raises(ServiceError, match=r"needs root.*apt-get install no-such-package"):
        ensure_installed(missing)


def test_stop_new_processes_only_touches_new_instances_of_the_binary(tmp_path: Path) -> None:
    """What ensure_installed does after apt-get, if a package started its own server."""
    sleep = shutil.which("sleep")
    assert sleep
    server = tmp_path / "fake-server"
    shutil.copy(sleep, server)
    old = subprocess.Popen([server, "60"])
    other = subprocess.Popen([sleep, "60"])
    try:
        before = _all_pids() - {other.pid}  # "other" appeared too, but runs another binary
        new = subprocess.Popen([server, "60"])
        assert stop_new_processes(str(server), before) == [new.pid]
        assert new.wait(5) == -15  # SIGTERM
        assert old.poll() is None and other.poll() is None
    finally:
        for process in (old, other):
            process.kill()
            process.wait()
