"""The operator's commands against real nodes: ``status --data-dir`` (one node),
``identity new``, ``lookup``, ``search``, ``watch``, and ``backup`` while the node takes
writes, then ``restore`` into a wiped data directory, with every acknowledged record back.

Commands run in this process through ``supernode.cli.main`` (what the console script
calls), except ``watch`` and the backup, which run as real processes beside the test's own
clients."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from queue import Empty, Queue

import pytest

from client_sdk import Client, Identity, NotFound, SyncClient
from supernode.cli import main
from supernode.ops.backup import MANIFEST
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, unique
from tests.integration.waiting import eventually

Cli = Callable[..., tuple[int, str, str]]
NODE_KEYS = {
    "node", "version", "pid", "health", "started_at_ms", "uptime_seconds", "listen", "tls",
    "workers", "data_dir", "store", "accounts", "devices_online", "watchers", "listeners",
    "relay_sessions", "cluster",
}  # fmt: skip
KEEP_DEVICES = dataclasses.replace(TEST_CONFIG, unregister_on_close=False)  # leases outlive us


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _expected_workers() -> int:
    """Worker processes besides the primary: ``--workers N`` runs N processes in all."""
    return max(0, int(os.environ.get("SUPERNODE_TEST_WORKERS") or 1) - 1)


def test_status_of_one_node(supernode: SupernodeProcess, cli: Cli, tmp_path: Path) -> None:
    target = supernode.grpc_target
    code, _, err = cli("identity", "new", "opsalice", "--file", str(tmp_path / "a.json"),
                       "--endpoint", target, "--plaintext")  # fmt: skip
    assert code == 0, err
    code, out, err = cli("status", "--data-dir", str(supernode.data_dir), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == NODE_KEYS
    assert (document["node"], document["health"], document["tls"]) == (target, "serving", False)
    assert document["listen"]["grpc"] == target
    assert document["listen"]["metrics"] == supernode.ready["metrics"]
    assert document["listen"]["stun"] == supernode.stun_address
    assert document["data_dir"] == str(supernode.data_dir.absolute())
    assert supernode.process is not None and document["pid"] == supernode.process.pid
    assert document["accounts"] == 1 and document["cluster"] is None
    assert document["store"]["size_bytes"] > 0
    assert document["store"]["disk_bytes"] >= document["store"]["size_bytes"]
    assert len(document["workers"]) == _expected_workers()
    assert document["uptime_seconds"] >= 0

    code, out, _ = cli("status", "--data-dir", str(supernode.data_dir))
    assert code == 0 and f"grpc            {target} (plaintext)" in out.splitlines()

    code, out, err = cli("status", "--data-dir", str(tmp_path / "nothing"))
    assert (code, out) == (1, "")
    assert "no node is serving at" in err and "admin.sock" in err


def _lines(stream: object, queue: Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        queue.put(line)
    queue.put(None)


def _next_line(queue: Queue[str | None], within: float = 30.0) -> str:
    try:
        line = queue.get(timeout=within)
    except Empty:
        raise AssertionError(f"no line from watch within {within} s") from None
    assert line is not None, "watch ended early"
    return line


def test_lookup_search_and_watch(supernode: SupernodeProcess, cli: Cli, tmp_path: Path) -> None:
    target, me = supernode.grpc_target, tmp_path / "me.json"
    flags = ("--endpoint", target, "--plaintext")
    handle, bob = unique("opsme"), unique("opsbob")
    code, out, err = cli("identity", "new", handle, "--file", str(me), "--display-name",
                         "Operator Me", "--json", *flags)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["handle"] == handle and me.stat().st_mode & 0o777 == 0o600
    code, _, err = cli("identity", "new", handle, "--file", str(me), *flags)
    assert code == 2 and "exists" in err  # never overwritten
    code, _, err = cli("identity", "new", handle, "--file", str(tmp_path / "b.json"), *flags)
    assert code == 1 and "is taken" in err and not (tmp_path / "b.json").exists()

    watcher = subprocess.Popen(
        [sys.executable, "-m", "supernode.cli", "watch", bob, "--json", "--count", "2",
         "--identity", str(me), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: Queue[str | None] = Queue()
    threading.Thread(target=_lines, args=(watcher.stdout, lines), daemon=True).start()
    try:
        bob_key = Identity.generate()
        with SyncClient(target, bob_key, bob, config=TEST_CONFIG) as client:
            client.create_account("Bob Ops")
            snapshot = json.loads(_next_line(lines))
            assert snapshot["kind"] == "snapshot" and snapshot["not_found"] in ([bob], [])
            client.register_device("laptop", transport_key=Identity.generate().public_key)
            online = json.loads(_next_line(lines))
            assert (online["kind"], online["handle"], online["device_id"]) == (
                "online",
                bob,
                "laptop",
            )
            assert watcher.wait(30) == 0, watcher.stderr.read() if watcher.stderr else ""

            code, out, err = cli("lookup", bob, "--identity", str(me), "--json", *flags)
            assert code == 0, err
            found = json.loads(out)
            assert found["account"]["account_key"] == bob_key.public_key.hex()
            assert [d["device_id"] for d in found["devices"]] == ["laptop"]
            code, out, _ = cli("lookup", bob, "--identity", str(me), *flags)
            assert code == 0 and out.splitlines()[2].split()[:2] == ["laptop", "online"]
            code, out, _ = cli("watch", bob, "--identity", str(me), "--timeout", "0.5", *flags)
            assert code == 0 and out.startswith(f"snapshot {bob}: 1 device(s) laptop=online")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)

    code, out, err = cli("search", "operator", "--identity", str(me), "--json", *flags)
    assert code == 0, err
    assert handle in [r["handle"] for r in json.loads(out)["results"]]

    # Each bad input: a deliberate exit code and one line saying what is wrong.
    code, out, err = cli("lookup", "nobody-here", "--identity", str(me), *flags)
    assert (code, out) == (1, "") and "'nobody-here': not found" in err
    code, _, err = cli("lookup", "Not A Handle", "--identity", str(me), *flags)
    assert code == 2 and "refused as invalid" in err
    code, _, err = cli("lookup", bob, "--identity", str(tmp_path / "missing.json"), *flags)
    assert code == 2 and "no identity file" in err and "supernode identity new" in err
    (tmp_path / "junk.json").write_text("not json")
    code, _, err = cli("search", "x", "--identity", str(tmp_path / "junk.json"), *flags)
    assert code == 2 and "is not an identity file" in err
    code, _, err = cli("watch", bob, "--count", "0", "--identity", str(me), *flags)
    assert code == 2 and "--count" in err
    code, _, err = cli("lookup", bob, "--identity", str(me), *flags, "--tls-ca-file", "ca.pem")
    assert code == 2 and "choose one" in err
    with pytest.raises(SystemExit) as usage:
        main(["lookup"])  # argparse: a missing argument
    assert usage.value.code == 2


async def _writer(
    target: str, acknowledged: dict[str, tuple[bytes, int]], stop: asyncio.Event
) -> None:
    """Create accounts with one device each until ``stop``; note each once acknowledged."""
    while not stop.is_set():
        identity, handle = Identity.generate(), unique("bk")
        async with Client(target, identity, handle, config=KEEP_DEVICES) as client:
            await client.create_account()
            registration = await client.register_device(
                "phone", transport_key=identity.public_key, ttl=3000
            )
        acknowledged[handle] = (identity.public_key, registration.seq)


async def _backup_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supernode.cli", "backup", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_backup_while_serving_then_restore_keeps_every_acknowledged_record(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    node = start_supernode("--lease-max-ttl-seconds", "3600")
    data, backup = node.data_dir, tmp_path / "backup"
    acknowledged: dict[str, tuple[bytes, int]] = {}
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(node.grpc_target, acknowledged, stop)) for _ in range(3)]
    try:

        async def enough() -> bool:
            return len(acknowledged) >= 15

        await eventually(enough, within=60, what="15 acknowledged writes")
        before = dict(acknowledged)  # acknowledged before the backup was asked for
        code, out = await _backup_cli(str(backup), "--data-dir", str(data), "--json")
        assert code == 0, out
        written = json.loads(out)
        assert written["directory"] == str(backup) and written["files"] > 0
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert (backup / MANIFEST).exists()

    code, out = await _backup_cli(str(backup), "--data-dir", str(data))
    assert code == 2 and "is not empty" in out
    code, out = await _backup_cli(str(tmp_path / "b2"), "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "no node is serving" in out
    code, out = await _backup_cli(str(tmp_path / "b3"))
    assert code == 2 and "--data-dir" in out
    # A running node's data directory is never restored over.
    assert main(["restore", str(backup), "--data-dir", str(data), "--force"]) == 2

    assert node.terminate() == 0
    shutil.rmtree(data)
    assert main(["restore", str(backup), "--data-dir", str(data)]) == 0
    assert main(["restore", str(backup), "--data-dir", str(data)]) == 2  # not empty now
    assert main(["restore", str(tmp_path), "--data-dir", str(tmp_path / "x")]) == 2
    restored = start_supernode("--lease-max-ttl-seconds", "3600", data_dir=data)

    reader_handle = next(iter(before))
    async with Client(restored.grpc_target, Identity.generate(), unique("reader"),
                      config=TEST_CONFIG) as reader:  # fmt: skip
        await reader.create_account()
        for handle, (key, seq) in before.items():
            presence = await reader.lookup(handle)
            assert presence.account.account_key == key, handle
            assert [(d.device_id, d.seq) for d in presence.devices] == [("phone", seq)], handle
        for handle, (key, _) in acknowledged.items():  # after the checkpoint: in or out, whole
            try:
                presence = await reader.lookup(handle)
            except NotFound:
                continue
            assert presence.account.account_key == key, handle
    assert reader_handle in before
