"""Issue 4's lab cases: the SDK connects peers directly where the NATs allow it and
through the relay where they do not; 1 MiB each way arrives intact; the relay (and the
supernode) only ever carry ciphertext."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import pytest

from tests.nat.lab import Host, NatKind, NatLab
from tests.nat.lab_supernode import start_supernode
from tests.nat.probes import JsonLinesProcess

TAP_PORT = 7800
CASES = [
    pytest.param(("none", False), ("none", False), "direct", id="both-public"),
    pytest.param(("eim", False), ("none", False), "direct", id="one-nat-one-public"),
    pytest.param(("eim", False), ("eim", False), "direct", id="both-eim-hole-punching"),
    pytest.param(("symmetric", False), ("symmetric", False), "relay", id="both-symmetric"),
    pytest.param(("eim", True), ("eim", False), "relay", id="one-udp-blocked"),
]


def peer(host: Host, *args: str) -> JsonLinesProcess:
    return JsonLinesProcess(host, host.python("-m", "tests.nat.sdk_peer", *args), lifetime=120)


@pytest.mark.parametrize(("caller_net", "callee_net", "expected"), CASES)
def test_peers_connect_over_the_expected_path(
    nat_lab: NatLab,
    tmp_path: Path,
    caller_net: tuple[NatKind, bool],
    callee_net: tuple[NatKind, bool],
    expected: str,
) -> None:
    server = nat_lab.add_server()
    node = start_supernode(server, tmp_path / "data", lifetime=150)
    # Both peers reach the supernode through a recording proxy: everything the supernode
    # (and its relay) received from or sent to them is kept for the plaintext check.
    recorded = tmp_path / "tap.bin"
    tap = JsonLinesProcess(
        server,
        server.python(
            "-m", "tests.nat.tap_proxy", f"{server.address}:{TAP_PORT}", node.grpc_target,
            str(recorded),
        ),
        lifetime=150,
    )  # fmt: skip
    target = tap.next_line(30)["address"]
    stun = "{}:{}".format(*node.stun_address)
    caller_host = nat_lab.add_client("a", caller_net[0], block_udp=caller_net[1])
    callee_host = nat_lab.add_client("b", callee_net[0], block_udp=callee_net[1])
    marker = f"MARKER-{secrets.token_hex(4)}-plaintext "
    suffix = secrets.token_hex(3)

    callee = peer(callee_host, "callee", target, stun, f"callee-{suffix}")
    assert callee.next_line(60)["event"] == "listening"
    caller = peer(
        caller_host, "caller", target, stun, f"caller-{suffix}", f"callee-{suffix}", marker
    )
    assert caller.next_line(60)["event"] == "registered"
    caller.write_line({"go": True})

    connected = caller.next_line(60)
    assert connected["event"] == "connected", connected
    assert connected["path"] == expected, (connected, caller.stderr, callee.stderr)
    accepted = callee.next_line(60)
    assert accepted["event"] == "connected" and accepted["path"] == expected, accepted
    received = callee.next_line(60)
    done = caller.next_line(60)
    assert received["bytes"] == 1 << 20 and received["sha256"] == done["sent_sha256"]
    assert done["answer_ok"] is True
    closed = callee.next_line(60)
    assert closed == {"event": "closed", "reason": "closed by the app"}, closed  # not a timeout

    tap.process.send_signal(signal.SIGTERM)
    tap.process.wait(30)
    wire = recorded.read_bytes()
    assert f"callee-{suffix}".encode() in wire  # the tap sees what travels in the clear
    assert marker.encode() not in wire and marker[:16].encode() not in wire
    if expected == "relay":
        assert len(wire) > 2 << 20  # both megabytes went through the relay, as ciphertext
    else:
        assert len(wire) < 1 << 20  # direct: the data never touched the supernode
