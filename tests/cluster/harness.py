"""A real cluster on loopback: one local etcd and N ``supernode serve`` processes.

Each node keeps its data directory and gRPC port across restarts (a node's name is its
address, and placement refers to it), as an operator's supervisor would restart it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from supernode import certs
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from supernode.cluster.etcd_server import EtcdTls, LocalEtcd, free_ports
from supernode.cluster.keys import Keys
from supernode.cluster.placement import Placement
from supernode.debian import PackageError
from supernode.tls import NodeTls
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import FAST_LEASES
from tests.integration.waiting import eventually

PARTITIONS = 64  # small: placement and its mirror stay cheap; every node still owns some
MEMBER_TTL = 3

# The interpreter node ``index`` runs under: by default this test's; tests/cluster/netcut.py
# passes a wrapper that gives each node its own group id, its identity on the network.
PythonOf = Callable[[int], str]


def this_python(index: int) -> str:
    return sys.executable


@dataclass(frozen=True)
class ClusterPki:
    """A cluster CA and certificates made by ``supernode.certs``: one per node name
    (``node`` by default, valid for 127.0.0.1) and one for etcd."""

    directory: Path

    @classmethod
    def make(cls, directory: Path, *names: str) -> ClusterPki:
        for name in (*names, "node", "etcd"):
            certs.ensure_node(directory, name)
        return cls(directory)

    @property
    def ca(self) -> Path:
        return self.directory / certs.CA_FILE

    @property
    def sdk_ca(self) -> Path:
        return self.directory / certs.SDK_CA_FILE

    def files(self, name: str = "node") -> tuple[Path, Path]:
        cert, key = certs.node_file_names(name)
        return self.directory / cert, self.directory / key

    def serve_flags(self, name: str = "node") -> tuple[str, ...]:
        cert, key = self.files(name)
        return (
            "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-file", str(self.ca)
        )  # fmt: skip

    def etcd_tls(self) -> EtcdTls:
        cert, key = self.files("etcd")
        return EtcdTls(cert, key, self.ca)

    def client_tls(self, name: str = "node") -> NodeTls:
        """What a node (or an operator's command) shows etcd and peers."""
        cert, key = self.files(name)
        return NodeTls(cert.read_bytes(), key.read_bytes(), self.ca.read_bytes())


class Cluster:
    def __init__(
        self,
        etcd: LocalEtcd,
        root: Path,
        nodes: int,
        *extra: str,
        python_of: PythonOf = this_python,
        pki: ClusterPki | None = None,
    ) -> None:
        """``pki``: TLS and mutual TLS throughout (nodes, etcd); None: plaintext."""
        self.etcd = etcd
        self.root = root
        self.pki = pki
        self.extra = [*(pki.serve_flags() if pki else ()), *extra]
        self.python_of = python_of
        self.ports = free_ports(nodes)
        self.nodes: list[SupernodeProcess | None] = [None] * nodes
        self.keys = Keys("/supernode")

    @property
    def endpoints(self) -> str:
        return ",".join(self.etcd.client_endpoints)

    def target(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    @property
    def targets(self) -> list[str]:
        return [self.target(i) for i in range(len(self.ports))]

    def start(self, index: int) -> SupernodeProcess:
        node = SupernodeProcess(
            self.root / f"node{index}",
            *FAST_LEASES,
            "--listen",
            self.target(index),
            "--cluster-etcd-endpoints",
            self.endpoints,
            "--cluster-partitions",
            str(PARTITIONS),
            "--cluster-member-ttl-seconds",
            str(MEMBER_TTL),
            *self.extra,
            python=self.python_of(index),
        ).start(timeout=60)
        self.nodes[index] = node
        return node

    def node(self, index: int) -> SupernodeProcess:
        node = self.nodes[index]
        assert node is not None, f"node {index} is not running"
        return node

    def kill(self, index: int) -> None:
        node = self.nodes[index]
        if node is not None:
            node.kill()
            self.nodes[index] = None

    def stop(self, index: int) -> int:
        """SIGTERM node ``index`` and wait: the exit code of its graceful shutdown."""
        code = self.node(index).terminate()
        self.nodes[index] = None
        return code

    def kill_all(self) -> None:
        for index in range(len(self.nodes)):
            self.kill(index)

    async def placement(self) -> Placement | None:
        tls = None if self.pki is None else self.pki.client_tls()
        async with EtcdClient(EtcdConfig(tuple(self.etcd.client_endpoints), tls=tls)) as etcd:
            entry = await etcd.get(self.keys.placement)
        return None if entry is None else Placement.from_bytes(entry.value)

    async def wait_placed_on_all(self, within: float = 60.0) -> Placement:
        """Until placement spreads partitions over every running node, no move in flight."""
        return await self.wait_placed_on(
            {self.target(i) for i, node in enumerate(self.nodes) if node is not None}, within
        )

    async def wait_placed_on(self, wanted: set[str], within: float = 60.0) -> Placement:
        """Until the placement holds partitions on exactly ``wanted``, every move flipped."""

        async def placed() -> bool:
            placement = await self.placement()
            return placement is not None and placement.settled and placement.nodes() == wanted

        await eventually(placed, within, f"placement settled over {sorted(wanted)}")
        placement = await self.placement()
        assert placement is not None
        return placement

    def handle_owned_by(self, placement: Placement, index: int, prefix: str) -> str:
        """A fresh handle whose partition the node ``index`` owns."""
        owner = self.target(index)
        for n in range(100_000):
            handle = f"{prefix}-{n}-{id(self) % 997}"
            if placement.owner_of_handle(handle) == owner:
                return handle
        raise AssertionError(f"no handle owned by {owner}")


async def started_etcd(members: int = 1, tls: EtcdTls | None = None) -> LocalEtcd:
    server = LocalEtcd(members, tls=tls)
    try:
        await server.start()
    except PackageError as error:
        pytest.fail(f"cluster tests need etcd and could not install it: {error}")
    return server


@contextlib.asynccontextmanager
async def running_cluster(
    root: Path,
    nodes: int = 3,
    *extra: str,
    etcd_members: int = 1,
    python_of: PythonOf = this_python,
    started: int | None = None,
    pki: ClusterPki | None = None,
) -> AsyncIterator[Cluster]:
    """A cluster of ``nodes`` (ports and data directories), of which the first ``started``
    (default all) run; a test starts the others itself, to join them. With ``pki``: TLS
    for clients, mutual TLS between nodes and to etcd."""
    etcd = await started_etcd(etcd_members, None if pki is None else pki.etcd_tls())
    cluster = Cluster(etcd, root, nodes, *extra, python_of=python_of, pki=pki)
    try:
        for index in range(nodes if started is None else started):
            cluster.start(index)
        await cluster.wait_placed_on_all()
        yield cluster
    finally:
        cluster.kill_all()
        await etcd.stop()
