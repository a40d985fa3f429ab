"""A call survives the loss of its direct path: two peers behind endpoint-independent NATs
connect directly; one router starts dropping all UDP (a network turning UDP off mid-call);
the same connection carries on over the relay, and returns to direct once UDP passes again.

Both transitions are checked from outside: a stream opened after the cut must arrive (with
UDP dropped it can only cross the relay, over TCP) and both peers must report ``relay``;
after the rule is removed both must report ``direct`` again and a stream must still work.
The switch times are printed (``-s`` shows them), never asserted: they depend on the load.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nat.lab import Host, NatLab
from tests.nat.lab_supernode import start_supernode
from tests.nat.probes import JsonLinesProcess

LIFETIME = 240
# Bounds on waits, generous for a loaded 2-core machine; the policy switches in ~3-4 s.
SWITCH_DEADLINE = 40.0
STREAM_BYTES = 256 << 10


def peer(host: Host, *args: str) -> JsonLinesProcess:
    return JsonLinesProcess(
        host, host.python("-m", "tests.nat.path_peer", *args), lifetime=LIFETIME
    )


def ask(process: JsonLinesProcess, op: str, **fields: Any) -> dict[str, Any]:
    process.write_line({"op": op, **fields})
    answer = process.next_line(90)
    assert answer.get("op") == op, answer
    return answer


def wait_for_path(
    peers: dict[str, JsonLinesProcess], path: str, deadline: float
) -> dict[str, dict[str, Any]]:
    """Poll every peer until each reports ``path``; AssertionError at the deadline."""
    states: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        states = {name: ask(process, "path") for name, process in peers.items()}
        if all(state["path"] == path for state in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"not all on {path} in time: {states}")


def first_change(state: dict[str, Any], old: str, new: str, after: float) -> dict[str, Any]:
    for change in state["changes"]:
        if change["old"] == old and change["new"] == new and change["at"] >= after:
            return dict(change)
    raise AssertionError(f"no {old} -> {new} change after {after}: {state}")


def report(label: str, started: float, states: dict[str, dict[str, Any]], old: str) -> None:
    new = states["caller"]["path"]
    for name, state in states.items():
        change = first_change(state, old, new, started)
        print(
            f"[{label}] {name}: {old} -> {new} {change['at'] - started:.2f} s after the "
            f"network change ({change['reason']}; waited {change['waited']:.2f} s by the policy)"
        )


@pytest.mark.parametrize("cut_at", ["caller", "callee"])
def test_a_call_moves_to_the_relay_when_udp_stops_and_back_when_it_returns(
    nat_lab: NatLab, tmp_path: Path, cut_at: str
) -> None:
    server = nat_lab.add_server()
    node = start_supernode(server, tmp_path / "data", lifetime=LIFETIME + 30)
    stun = "{}:{}".format(*node.stun_address)
    hosts = {"caller": nat_lab.add_client("a", "eim"), "callee": nat_lab.add_client("b", "eim")}
    suffix = secrets.token_hex(3)
    callee = peer(hosts["callee"], "callee", node.grpc_target, stun, f"callee-{suffix}")
    assert callee.next_line(60)["event"] == "listening"
    caller = peer(
        hosts["caller"], "caller", node.grpc_target, stun, f"caller-{suffix}", f"callee-{suffix}"
    )
    assert caller.next_line(60)["event"] == "registered"
    caller.write_line({"op": "connect"})
    peers = {"caller": caller, "callee": callee}
    for name, process in peers.items():
        connected = process.next_line(60)
        assert connected == {"event": "connected", "path": "direct"}, (name, connected)
    before = ask(caller, "stream", bytes=STREAM_BYTES)
    assert before["ok"] and before["path"] == "direct", before

    # UDP off: the direct path dies both ways; TCP to the supernode (the relay) still works.
    cut = time.monotonic()
    hosts[cut_at].drop_udp()
    after_cut = ask(caller, "stream", bytes=STREAM_BYTES)  # opened after the cut
    assert after_cut["ok"], (after_cut, caller.stderr)
    on_relay = wait_for_path(peers, "relay", cut + SWITCH_DEADLINE)
    from_callee = ask(callee, "stream", bytes=STREAM_BYTES)
    assert from_callee["ok"] and from_callee["path"] == "relay", from_callee
    report(f"UDP dropped at the {cut_at}'s router", cut, on_relay, "direct")
    print(f"  the stream opened after the cut took {after_cut['seconds']:.2f} s")

    # UDP back: both peers find the direct path again on the same connection.
    healed = time.monotonic()
    hosts[cut_at].drop_udp(False)
    on_direct = wait_for_path(peers, "direct", healed + SWITCH_DEADLINE)
    report("UDP allowed again", healed, on_direct, "relay")
    again = ask(caller, "stream", bytes=STREAM_BYTES)
    assert again["ok"] and again["path"] == "direct", again
    # Still the one connection: one setup, then exactly the two moves (no reconnect).
    assert [(c["old"], c["new"]) for c in ask(caller, "path")["changes"]] == [
        (None, "direct"),
        ("direct", "relay"),
        ("relay", "direct"),
    ]

    assert ask(caller, "close") == {"op": "close"}
    assert ask(callee, "close") == {"op": "close"}
