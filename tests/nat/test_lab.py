"""The NAT lab behaves like the Internet the P2P tests claim to run on.

Each property a P2P result depends on is checked directly: reachability of the server,
the mapping behaviour of each NAT kind (what STUN reports), the filtering of unsolicited
inbound traffic, the UDP block, and, as the sum of all of them, whether aioice alone
punches a hole in each of the FINDINGS cases. If one of these broke, a P2P test could pass
or fail for reasons that have nothing to do with the SDK.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.nat.lab import Host, NatKind, NatLab, lab_namespaces, sweep_stale_namespaces
from tests.nat.lab_supernode import start_supernode
from tests.nat.probes import ProbeClient, ProbeServer, connect_ice_pair
from tests.nat.requirements import tool


def test_public_client_reaches_the_server_over_udp_and_tcp(nat_lab: NatLab) -> None:
    server = ProbeServer(nat_lab.add_server())
    client = nat_lab.add_client("pub")
    probe = ProbeClient(client)

    assert probe.stun(server.stun[0]) == (client.address, probe.local[1])  # no NAT in between
    assert probe.echo(server.echo)
    assert probe.tcp(server.tcp)["echoed"]
    assert server.saw(client.address, "udp")
    assert server.saw(client.address, "tcp")


@pytest.mark.parametrize("nat", ["eim", "symmetric"])
def test_stun_sees_the_routers_address_and_the_nat_kinds_port_mapping(
    nat_lab: NatLab, nat: NatKind
) -> None:
    """One local socket, three destinations: same public port behind EIM, new ones behind
    symmetric. Three, not two, so that a random port repeating by chance cannot fail it."""
    server = ProbeServer(nat_lab.add_server(), stun_ports=(3478, 3479, 3480))
    client = nat_lab.add_client("a", nat)
    probe = ProbeClient(client)

    mapped = [probe.stun(address) for address in server.stun]

    assert all(m is not None for m in mapped), mapped
    assert {m[0] for m in mapped if m} == {client.public_address} != {client.address}
    ports = {m[1] for m in mapped if m}
    if nat == "eim":
        assert len(ports) == 1, f"endpoint-independent mapping expected, got {mapped}"
    else:
        assert len(ports) > 1, f"a new mapping per destination expected, got {mapped}"


@pytest.mark.parametrize("nat", ["eim", "symmetric"])
def test_unsolicited_inbound_udp_never_reaches_a_natted_client(
    nat_lab: NatLab, nat: NatKind
) -> None:
    server_host = nat_lab.add_server()
    server = ProbeServer(server_host)
    client = nat_lab.add_client("a", nat)
    intruder = ProbeClient(nat_lab.add_client("intruder"))
    control = nat_lab.add_client("control")  # a public host: knocks do arrive there
    probe, control_probe = ProbeClient(client), ProbeClient(control)

    mapped = probe.stun(server.stun[0])
    assert mapped is not None
    assert probe.echo(server.echo)  # solicited answers arrive

    intruder.knock(mapped)  # another host, to the live mapping
    ProbeClient(server_host).knock(mapped)  # the right host, from another port
    intruder.knock((client.public_address, probe.local[1]))  # the client's own port
    intruder.knock((control.address, control_probe.local[1]))
    assert probe.echo(server.echo)  # the socket still works after the knocks

    assert probe.unsolicited() == []
    assert control_probe.unsolicited() == [(nat_lab.hosts["intruder"].address, intruder.local[1])]


def test_blocked_udp_never_reaches_the_server_but_tcp_does(nat_lab: NatLab) -> None:
    server = ProbeServer(nat_lab.add_server())
    client = nat_lab.add_client("blocked", "eim", block_udp=True)
    probe = ProbeClient(client)

    assert probe.stun(server.stun[0], tries=2) is None
    assert not probe.echo(server.echo, tries=2)
    assert probe.tcp(server.tcp)["echoed"]

    assert server.saw(client.public_address, "tcp")
    assert client.public_address not in server.sources("udp")


def test_every_kind_of_client_reaches_a_real_supernode(nat_lab: NatLab, tmp_path: Path) -> None:
    """gRPC (hence the relay) works from every client; STUN from all but the blocked one."""
    node = start_supernode(nat_lab.add_server(), tmp_path / "data")
    clients = [
        nat_lab.add_client("pub"),
        nat_lab.add_client("eim", "eim"),
        nat_lab.add_client("sym", "symmetric"),
        nat_lab.add_client("blocked", "eim", block_udp=True),
    ]
    probes = [ProbeClient(client) for client in clients]  # start all, then ask each

    for client, probe in zip(clients, probes, strict=True):
        status = probe.ask("grpc_health", target=node.grpc_target)["status"]
        assert status == "SERVING", (client.name, status, "".join(node.log))
        mapped = probe.stun(node.stun_address, tries=2 if client.block_udp else 3)
        expected = None if client.block_udp else client.public_address
        assert (mapped[0] if mapped else None) == expected, client.name


# (peer a, peer b, b's UDP blocked, connected directly?): the cases measured in FINDINGS,
# plus port-restricted cone (Linux EIM) against symmetric, which also needs the relay.
ICE_CASES = [
    ("none", "none", False, True),
    ("eim", "none", False, True),
    ("eim", "eim", False, True),
    ("symmetric", "symmetric", False, False),
    ("eim", "eim", True, False),
    ("symmetric", "none", False, True),
    ("eim", "symmetric", False, False),
]


@pytest.mark.parametrize(("nat_a", "nat_b", "block_b", "direct"), ICE_CASES)
def test_aioice_hole_punching(
    nat_lab: NatLab, nat_a: NatKind, nat_b: NatKind, block_b: bool, direct: bool
) -> None:
    server = ProbeServer(nat_lab.add_server())
    a = nat_lab.add_client("a", nat_a)
    b = nat_lab.add_client("b", nat_b, block_udp=block_b)

    result_a, result_b = connect_ice_pair(a, b, server.stun[0], timeout=20)

    assert result_a["connected"] is direct, result_a
    assert result_b["connected"] is direct, result_b
    if direct:  # each reached the other at its public (NAT) address: a punched hole
        assert result_a["remote"][0] == b.public_address, result_a
        assert result_b["remote"][0] == a.public_address, result_b


def test_close_kills_processes_and_deletes_namespaces() -> None:
    with NatLab() as lab:
        host = lab.add_client("a", "symmetric")
        sleeper = host.popen(["sleep", "100"])
        names = list(lab.namespaces)
        assert set(names) <= set(lab_namespaces())
    assert sleeper.poll() is not None
    assert not set(names) & set(lab_namespaces())


def test_sweep_removes_namespaces_whose_owner_is_gone() -> None:
    """A namespace named for this PID but another start time: its owner died long ago."""
    prefix = "snlabtest"
    stale = f"{prefix}-{os.getpid()}-0-1-hub"
    subprocess.run([tool("ip"), "netns", "add", stale], check=True)
    try:
        assert stale not in sweep_stale_namespaces(prefix)  # too young to be swept yet
        swept = sweep_stale_namespaces(prefix, now=time.time() + 3600)
        assert stale in swept
        assert stale not in lab_namespaces(prefix)
    finally:
        subprocess.run([tool("ip"), "netns", "del", stale], capture_output=True)


def test_a_natted_host_knows_its_router(nat_lab: NatLab) -> None:
    client: Host = nat_lab.add_client("a", "eim")
    assert client.router is not None
    rules = client.router.run(["iptables-save"]).stdout
    assert "-j MASQUERADE" in rules and "--random-fully" not in rules
    assert "--ctstate RELATED,ESTABLISHED -j ACCEPT" in rules
