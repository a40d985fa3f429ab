"""The start-up checks alone: which setting a failure names, and what a probe finds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from supernode.startup import StartupError, check_data_dir, label, probe_port


def test_label_names_every_way_to_set_it() -> None:
    assert label("server.listen") == "server.listen (--listen, SUPERNODE_LISTEN)"
    assert label("cluster.peer_listen +1, x") == (
        "cluster.peer_listen (--cluster-peer-listen, SUPERNODE_CLUSTER_PEER_LISTEN) +1, x"
    )


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_probe_finds_a_taken_port(kind: socket.SocketKind) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(StartupError, match=f"cannot bind {address}: address already in use"):
            probe_port("server.listen", address, kind)
    probe_port("server.listen", address, kind)  # let go: free again
    probe_port("server.listen", "127.0.0.1:0", kind)  # port 0: nothing to check


def test_probe_names_a_host_that_is_not_here() -> None:
    with pytest.raises(StartupError, match="does not resolve"):
        probe_port("server.listen", "no.such.host.invalid:7700", socket.SOCK_STREAM)
    with pytest.raises(StartupError, match="not an address of this host"):
        probe_port("server.listen", "192.0.2.1:7700", socket.SOCK_STREAM)  # TEST-NET-1


def test_data_dir_is_made_and_must_be_a_directory(tmp_path: Path) -> None:
    check_data_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupError, match="exists and is not a directory"):
        check_data_dir(tmp_path / "file")
