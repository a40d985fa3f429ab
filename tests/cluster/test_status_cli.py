"""``supernode status`` and ``supernode dev-cluster``.

The report builder is tested on hand-made reads (up/down, lag, partition counts, the JSON
keys); the command runs against a real etcd into which the test writes the cluster's keys
itself, and against an endpoint nobody listens on; dev-cluster runs as the user runs it, and
the test checks that its nodes serve and that nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supernode.cluster.dev_cluster import DevClusterPlan, parse_ready
from supernode.cluster.etcd_server import LocalEtcd, free_ports
from supernode.cluster.keys import Keys, MemberInfo, NodeInfo
from supernode.cluster.placement import Placement
from supernode.cluster.status import (
    ClusterRead,
    EndpointProbe,
    build_report,
    render_table,
)
from tests.cluster.conftest import ClientFactory

pytestmark = pytest.mark.slow

A, B, C = "127.0.0.1:7701", "127.0.0.1:7702", "127.0.0.1:7703"
# 4 partitions, RF 2: A owns p0 and p3, B owns p1, C owns p2; A and B hold 3, C holds 2.
PLACEMENT = Placement(epoch=4, replication_factor=2, replicas=((A, B), (B, C), (C, A), (A, B)))


def _read(**overrides: object) -> ClusterRead:
    fields: dict[str, object] = {
        "endpoint": "127.0.0.1:2379",
        "revision": 50,
        "nodes": {
            A: NodeInfo(A, zone="z1").to_bytes(),
            B: NodeInfo(B, zone="z2").to_bytes(),
            C: NodeInfo(C, zone="z3").to_bytes(),
        },
        "members": {
            A: MemberInfo(A, zone="z1", version="0.1.0", mirror_revision=48).to_bytes(),
            B: MemberInfo(B, zone="z2", version="0.2.0", mirror_revision=10).to_bytes(),
        },
        "placement": PLACEMENT.to_bytes(),
        "controller": A.encode(),
    }
    fields.update(overrides)
    return ClusterRead(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pure report


def test_report_says_up_down_lag_and_partitions() -> None:
    report = build_report(_read(), "/supernode")
    rows = {node.name: node for node in report.nodes}
    assert [node.name for node in report.nodes] == [A, B, C]
    assert (rows[A].state, rows[A].lag, rows[A].mirror_revision) == ("up", 2, 48)
    assert (rows[B].state, rows[B].lag, rows[B].version) == ("up", 40, "0.2.0")
    assert (rows[C].state, rows[C].lag, rows[C].mirror_revision) == ("down", None, None)
    assert (rows[C].address, rows[C].zone, rows[C].version) == (C, "z3", "")
    assert [(rows[n].partitions_owned, rows[n].partitions_held) for n in (A, B, C)] == [
        (2, 3),
        (1, 3),
        (1, 2),
    ]
    assert report.placement is not None and report.placement.epoch == 4
    assert (report.placement.partitions, report.placement.replication_factor) == (4, 2)
    assert report.controller == A and report.problems == ()


def test_report_shows_members_outside_nodes_and_placement_only_nodes() -> None:
    d = "127.0.0.1:7704"
    members = {d: MemberInfo(d, mirror_revision=50).to_bytes()}  # joined, not yet in /nodes
    report = build_report(_read(nodes={}, members=members), "/supernode")
    rows = {node.name: node for node in report.nodes}
    assert sorted(rows) == [A, B, C, d]  # A, B, C known only from the placement
    assert (rows[d].state, rows[d].registered, rows[d].lag) == ("up", False, 0)
    assert (rows[A].state, rows[A].registered, rows[A].address) == ("down", False, "")
    assert rows[A].partitions_held == 3


def test_report_lists_undecodable_values_and_still_shows_the_node() -> None:
    read = _read(
        members={A: b"not json"}, placement=b'{"format": 99}', nodes={B: NodeInfo(B).to_bytes()}
    )
    report = build_report(read, "/supernode")
    rows = {node.name: node for node in report.nodes}
    assert sorted(rows) == [A, B]
    assert (rows[A].state, rows[A].mirror_revision, rows[A].lag) == ("up", None, None)
    assert report.placement is None and rows[A].partitions_held == 0
    member_problem, placement_problem = report.problems
    assert member_problem.startswith(f"/members/{A}: not a member record")
    assert placement_problem.startswith("/placement: placement: format 99")


def test_json_keys_are_stable() -> None:
    probes = [EndpointProbe("127.0.0.1:1", "refused"), EndpointProbe("127.0.0.1:2379")]
    document = json.loads(json.dumps(build_report(_read(), "/x", probes).to_json()))
    assert set(document) == {"prefix", "etcd", "placement", "controller", "nodes", "problems"}
    assert document["etcd"] == {
        "endpoint": "127.0.0.1:2379",
        "revision": 50,
        "endpoints": [
            {"endpoint": "127.0.0.1:1", "reachable": False, "error": "refused"},
            {"endpoint": "127.0.0.1:2379", "reachable": True, "error": None},
        ],
    }
    assert document["placement"] == {
        "epoch": 4,
        "partitions": 4,
        "replication_factor": 2,
        "moving": 0,
    }
    assert document["nodes"][2] == {
        "name": C,
        "state": "down",
        "registered": True,
        "address": C,
        "zone": "z3",
        "version": "",
        "mirror_revision": None,
        "lag": None,
        "partitions_owned": 1,
        "partitions_held": 2,
        "partitions_incoming": 0,
        "membership": "active",
    }
    empty = build_report(_read(placement=None, controller=None), "/x").to_json()
    assert (empty["placement"], empty["controller"]) == (None, None)


def test_table_has_a_header_line_and_aligned_columns() -> None:
    probes = [EndpointProbe("127.0.0.1:1", "refused"), EndpointProbe("127.0.0.1:2379")]
    lines = render_table(build_report(_read(), "/supernode", probes)).splitlines()
    assert lines[0] == (
        "etcd 127.0.0.1:2379 ok at revision 50 | prefix /supernode | 3 nodes, 2 up | "
        f"placement epoch 4 (4 partitions, RF 2, 0 moving) | controller {A}"
    )
    assert lines[1] == "etcd 127.0.0.1:1 unreachable: refused"
    header, *rows = lines[2:]
    assert header.split() == [
        "NODE", "STATE", "ADDRESS", "ZONE", "VERSION", "MIRROR", "LAG", "OWNED", "HELD", "IN"
    ]  # fmt: skip
    columns = [header.index(title) for title in ("STATE", "LAG", "HELD")]
    assert [row.split() for row in rows] == [
        [A, "up", A, "z1", "0.1.0", "48", "2", "2", "3", "0"],
        [B, "up", B, "z2", "0.2.0", "10", "40", "1", "3", "0"],
        [C, "down", C, "z3", "-", "-", "-", "1", "2", "0"],
    ]
    for row in rows:  # every value starts under its title
        assert all(row[column - 1] == " " and row[column] != " " for column in columns)
    assert "no placement yet" in render_table(build_report(_read(placement=None), "/s"))


# --------------------------------------------------------------------------- the command


def _environment(**variables: str) -> dict[str, str]:
    """This environment without any SUPERNODE_* setting, plus ``variables``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SUPERNODE_")}
    return {**clean, **variables}


async def _supernode(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supernode.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or _environment(),
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _write_cluster(etcd: LocalEtcd, connect: ClientFactory, prefix: str) -> int:
    """A cluster of three nodes, one down, as the member code would leave it; returns the
    store revision after the last write."""
    keys = Keys(prefix)
    client = connect(etcd)
    for name, zone in ((A, "z1"), (B, "z2"), (C, "z3")):
        await client.put(keys.node(name), NodeInfo(name, zone=zone, joined_at_ms=1).to_bytes())
    await client.put(keys.placement, PLACEMENT.to_bytes())
    lease = await client.grant_kept_lease(10)
    await client.create_if_absent(keys.controller, A.encode(), lease)
    revision = await client.put(keys.member(B), MemberInfo(B, mirror_revision=1).to_bytes(), lease)
    member_a = MemberInfo(A, zone="z1", version="0.1.0", mirror_revision=revision)
    return await client.put(keys.member(A), member_a.to_bytes(), lease)


async def test_status_reads_a_real_etcd(etcd: LocalEtcd, connect: ClientFactory) -> None:
    revision = await _write_cluster(etcd, connect, "/test-cluster")
    (endpoint,) = etcd.client_endpoints

    code, out, err = await _supernode(
        "status", "--etcd-endpoints", endpoint, "--etcd-prefix", "/test-cluster"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"etcd {endpoint} ok at revision {revision} | prefix /test-cluster")
    assert (
        "3 nodes, 2 up | placement epoch 4 (4 partitions, RF 2, 0 moving) | controller " + A
        in (lines[0])
    )
    assert [line.split()[:2] for line in lines[2:]] == [[A, "up"], [B, "up"], [C, "down"]]

    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nobody listens there
    code, out, err = await _supernode(
        "status",
        "--json",
        env=_environment(
            SUPERNODE_CLUSTER_ETCD_ENDPOINTS=f"{dead},{endpoint}",
            SUPERNODE_CLUSTER_ETCD_PREFIX="/test-cluster",
            SUPERNODE_CLUSTER_ETCD_TIMEOUT_SECONDS="1",
        ),
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["etcd"]["endpoint"] == endpoint
    assert document["etcd"]["revision"] == revision
    assert [(e["endpoint"], e["reachable"]) for e in document["etcd"]["endpoints"]] == [
        (dead, False),
        (endpoint, True),
    ]
    nodes = {node["name"]: node for node in document["nodes"]}
    assert (nodes[A]["state"], nodes[A]["lag"], nodes[A]["version"]) == ("up", 1, "0.1.0")
    assert (nodes[B]["state"], nodes[B]["lag"]) == ("up", revision - 1)
    assert (nodes[C]["state"], nodes[C]["lag"], nodes[C]["zone"]) == ("down", None, "z3")
    assert [nodes[n]["partitions_owned"] for n in (A, B, C)] == [2, 1, 1]
    assert document["placement"]["epoch"] == 4 and document["controller"] == A


async def test_status_fails_in_one_line_when_etcd_is_unreachable() -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    code, out, err = await _supernode(
        "status", "--etcd-endpoints", dead, "--etcd-timeout-seconds", "0.5"
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("supernode status: etcd unreachable (")
    assert dead in err

    code, _, err = await _supernode("status")  # no endpoints anywhere
    assert code == 1 and "SUPERNODE_CLUSTER_ETCD_ENDPOINTS" in err


# --------------------------------------------------------------------------- dev-cluster


def test_dev_cluster_plan_gives_each_node_its_own_ports_and_data() -> None:
    plan = DevClusterPlan(nodes=2, data_dir=Path("/tmp/dc"), serve_args=("--log-level", "DEBUG"))
    argv = plan.serve_argv(1, ["127.0.0.1:2379"])
    flags = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert argv[1:4] == ["-m", "supernode.cli", "serve"]
    assert flags == {
        "--data-dir": "/tmp/dc/node-1",
        "--listen": "127.0.0.1:7702",
        "--metrics-listen": "127.0.0.1:9702",
        "--stun-listen": "127.0.0.1:3480",
        "--cluster-etcd-endpoints": "127.0.0.1:2379",
        # TLS by default: node i's own certificate, the cluster CA (made by etcd_tls()).
        "--tls-cert-file": str(Path("/tmp/dc/certs/node-1.pem").resolve()),
        "--tls-key-file": str(Path("/tmp/dc/certs/node-1-key.pem").resolve()),
        "--tls-ca-file": str(Path("/tmp/dc/certs/ca.pem").resolve()),
        "--log-level": "DEBUG",  # forwarded flags come last, so they win
    }
    plaintext = DevClusterPlan(nodes=1, tls=False).serve_argv(0, ["e:1"])
    assert "--tls-plaintext" in plaintext and "--tls-cert-file" not in plaintext
    free = DevClusterPlan(nodes=2, metrics_base_port=0, stun_base_port=0).serve_argv(0, ["e:1"])
    assert "127.0.0.1:0" in free and "127.0.0.1:7701" in free
    with pytest.raises(ValueError):
        DevClusterPlan(nodes=0)
    with pytest.raises(ValueError):
        DevClusterPlan(nodes=3, base_port=65534)
    ready = 'x INFO supernode supernode ready {"grpc": "127.0.0.1:7701", "pid": 5}\n'
    assert parse_ready(ready) == {"grpc": "127.0.0.1:7701", "pid": 5}
    assert parse_ready("supernode ready {broken") is None


def _two_free_ports() -> int:
    """A port P with P and P + 1 free now (dev-cluster's nodes use consecutive ports)."""
    for _ in range(50):
        base = free_ports(1)[0]
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", base + 1))
            return base
    raise AssertionError("no two consecutive free ports on 127.0.0.1")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    children, found, frontier = _children(), set[int](), [pid]
    while frontier:  # every pid is visited once: the tree is finite
        kids = [kid for parent in frontier for kid in children.get(parent, []) if kid not in found]
        found.update(kids)
        frontier = kids
    return found


def _running(pid: int) -> bool:
    """Still a process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def _serving_over_tls(target: str, ca: Path) -> bool:
    """Health over TLS verified with ``ca``; a plaintext channel must not get an answer."""
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(target, credentials) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _lines(stream: object, queue: Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        queue.put(line)
    queue.put(None)


def test_dev_cluster_serves_and_leaves_nothing_behind(tmp_path: Path) -> None:
    base = _two_free_ports()
    command = [
        sys.executable, "-m", "supernode.cli", "dev-cluster", "--nodes", "2",
        "--base-port", str(base), "--metrics-base-port", "0", "--stun-base-port", "0",
        "--data-dir", str(tmp_path / "dev"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    stdout: Queue[str | None] = Queue()
    stderr: list[str] = []
    threading.Thread(target=_lines, args=(process.stdout, stdout), daemon=True).start()
    threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True).start()
    started: set[int] = set()
    try:
        output: list[str] = []
        deadline = time.monotonic() + 120
        while not output or not output[-1].startswith("Ctrl-C"):
            try:
                line = stdout.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                line = None
            assert line is not None, "dev-cluster never ready:\n" + "".join(output + stderr)
            output.append(line)
        started = _descendants(process.pid)
        commands = [_command_line(pid) for pid in started]
        assert sum(" serve " in command for command in commands) == 2, commands
        assert any("etcd" in command.split()[0] for command in commands if command), commands

        client_line = next(line for line in output if "Client(" in line)
        match = re.search(r"Client\((\[.*?\])", client_line)
        assert match is not None, client_line
        targets = json.loads(match.group(1))
        # TLS by default: the SDK line names the CA file dev-cluster made for apps.
        sdk_ca = tmp_path / "dev" / "certs" / "sdk-ca.pem"
        assert f'Tls(ca_file="{sdk_ca.resolve()}")' in client_line, client_line
        assert targets == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
        for target in targets:
            assert _serving_over_tls(target, sdk_ca)
        assert (tmp_path / "dev" / "node-0").is_dir() and (tmp_path / "dev" / "node-1").is_dir()
        # Each node of the dev cluster reports itself through its admin socket.
        for index, target in enumerate(targets):
            asked = subprocess.run(
                [sys.executable, "-m", "supernode.cli", "status", "--json",
                 "--data-dir", str(tmp_path / "dev" / f"node-{index}")],
                capture_output=True, text=True, timeout=60, env=_environment(),
            )  # fmt: skip
            assert asked.returncode == 0, asked.stderr
            node = json.loads(asked.stdout)
            assert (node["listen"]["grpc"], node["tls"], node["health"]) == (
                target,
                True,
                "serving",
            )
            cluster = node["cluster"]
            assert cluster is not None and cluster["etcd_reachable"], cluster
            assert (cluster["nodes_up"], cluster["nodes_total"]) == (2, 2), cluster

        restart = subprocess.run(
            [sys.executable, "-m", "supernode.cli", "dev-cluster", "--rolling-restart",
             "--data-dir", str(tmp_path / "dev"), "--rolling-restart-seconds", "150"],
            capture_output=True, text=True, timeout=180, env=_environment(),
        )  # fmt: skip
        assert restart.returncode == 0, restart.stdout + restart.stderr
        lines = restart.stdout.splitlines()
        assert lines[0] == "rolling restart of 2 nodes" and lines[-1] == "done", lines
        assert [line.split(":")[0] for line in lines[1:-1]] == [
            "restarted node-0",
            "restarted node-1",
        ]
        started |= _descendants(process.pid)  # the restarted nodes are new processes
        for target in targets:
            assert _serving_over_tls(target, sdk_ca)
        missing = subprocess.run(
            [sys.executable, "-m", "supernode.cli", "dev-cluster", "--rolling-restart",
             "--data-dir", str(tmp_path / "nothing-here")],
            capture_output=True, text=True, timeout=60, env=_environment(),
        )  # fmt: skip
        assert missing.returncode == 1 and "no dev-cluster running" in missing.stderr

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, "".join(stderr)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in started if _running(pid)] == [], "".join(stderr)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in started:  # only what this test's dev-cluster started
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_status_of_one_member_over_its_admin_socket(tmp_path: Path) -> None:
    """``status --data-dir`` of a TLS cluster member: its own view of the cluster (the admin
    socket is the same whatever the public port serves)."""
    from tests.cluster.harness import PARTITIONS, ClusterPki, running_cluster

    async with running_cluster(tmp_path, 1, pki=ClusterPki.make(tmp_path / "pki")) as cluster:
        node = cluster.node(0)
        code, out, err = await _supernode("status", "--data-dir", str(node.data_dir), "--json")
        assert code == 0, err
        document = json.loads(out)
        assert (document["node"], document["tls"]) == (cluster.target(0), True)
        assert document["listen"]["peer"] == node.ready["peer"] != ""
        member = document["cluster"]
        assert member["etcd_endpoints"] == cluster.etcd.client_endpoints
        assert member["etcd_reachable"] and member["controller"]
        assert member["placement_epoch"] >= 1 and member["partitions_owned"] == PARTITIONS
        assert (member["nodes_up"], member["nodes_total"]) == (1, 1)
