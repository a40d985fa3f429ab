"""Mutual TLS in a cluster (issue 16, transport): nodes and etcd accept only certificates of
the cluster CA. A TLS cluster serves, replicates and forwards as a plaintext one does; the
internal service is refused on the public port even to a holder of a cluster certificate;
its peer port completes no handshake without one (or with another CA's); etcd answers no
client without one; and a node with another CA's certificate cannot join."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from client_sdk import Identity, Tls
from supernode import certs
from supernode.cluster.etcd import EtcdClient, EtcdConfig, EtcdUnavailable
from supernode.cluster.keys import Keys
from supernode.internal.v1 import cluster_pb2
from supernode.sessions import SessionAuthority
from supernode.tls import NodeTls
from tests.cluster.harness import ClusterPki, running_cluster
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, Clients, unique

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KEY = Identity.generate().public_key
APPLY = "/supernode.internal.v1.ClusterService/Apply"
LOOKUP = "/supernode.internal.v1.ClusterService/Lookup"


def run_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str


async def lookup_status(
    target: str,
    credentials: grpc.ChannelCredentials,
    metadata: tuple[tuple[str, str], ...],
    handle: str,
) -> Outcome:
    """How an internal (read-only) Lookup of ``handle`` ends."""
    request = cluster_pb2.ReplicaLookupRequest(handles=[handle]).SerializeToString()
    async with grpc.aio.secure_channel(target, credentials) as channel:
        try:
            await channel.unary_unary(LOOKUP)(request, timeout=5, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            return Outcome(error.code(), error.details() or "")
    return Outcome(grpc.StatusCode.OK, "")


async def refused(target: str, credentials: grpc.ChannelCredentials) -> grpc.aio.AioRpcError:
    """The error an internal call to ``target`` with ``credentials`` ends in."""
    async with grpc.aio.secure_channel(target, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await channel.unary_unary(APPLY)(b"", timeout=5)
    return error.value


async def test_a_mutual_tls_cluster_serves_and_refuses_outsiders(
    tmp_path: Path, sdk_clients: Clients
) -> None:
    pki = ClusterPki.make(tmp_path / "pki")
    outsider = ClusterPki.make(tmp_path / "outsider")  # another CA, same names
    async with running_cluster(
        tmp_path, 3, "--cluster-replication-factor", "2", pki=pki
    ) as cluster:
        placement = await cluster.wait_placed_on_all()
        first_two = {cluster.target(0), cluster.target(1)}
        handle = next(
            h
            for h in (unique("bob") for _ in range(10_000))
            if set(placement.replicas_of_handle(h)) == first_two
        )
        # The SDK over TLS, each client held to the node it was given (no ring): bob's
        # writes come in through node 2, which holds none of his data and forwards them.
        config = dataclasses.replace(
            TEST_CONFIG, plaintext=False, tls=Tls(ca_file=str(pki.sdk_ca)), ring_aware=False
        )
        bob = sdk_clients.open(cluster.target(2), handle, config=config)
        await bob.create_account("Bob")
        await bob.register_device("phone", transport_key=KEY)
        for index in range(3):  # both replicas hold it (replicated), node 2 forwards
            viewer = await sdk_clients.user(cluster.target(index), "viewer", config=config)
            found = await viewer.lookup(handle)
            assert [d.device_id for d in found.devices] == ["phone"], index
        ringed = dataclasses.replace(config, ring_aware=True)  # to replicas, over TLS
        reader = await sdk_clients.user(cluster.targets, "ringed", config=ringed)
        assert [d.device_id for d in (await reader.lookup(handle)).devices] == ["phone"]

        ca = pki.ca.read_bytes()
        node_cert, node_key = (path.read_bytes() for path in pki.files())
        peer = str(cluster.node(0).ready["peer"])
        assert peer and peer != cluster.target(0) and cluster.node(0).ready["tls"] is True
        # The public port never carries the internal service, even for a cluster certificate.
        as_node = grpc.ssl_channel_credentials(ca, node_key, node_cert)
        denied = await refused(cluster.target(0), as_node)
        assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "mutual TLS" in (denied.details() or "")
        # The peer port: no handshake without a client certificate, or with another CA's.
        other_cert, other_key = (path.read_bytes() for path in outsider.files())
        for credentials in (
            grpc.ssl_channel_credentials(ca),
            grpc.ssl_channel_credentials(ca, other_key, other_cert),
        ):
            assert (await refused(peer, credentials)).code() is grpc.StatusCode.UNAVAILABLE

        # etcd answers no client without a certificate of the cluster CA.
        endpoints = tuple(cluster.etcd.client_endpoints)
        foreign = NodeTls(other_cert, other_key, ca)
        for tls in (None, foreign):
            config_etcd = EtcdConfig(endpoints, tls=tls, call_timeout_s=2, attempt_timeout_s=1)
            async with EtcdClient(config_etcd) as etcd:
                with pytest.raises(EtcdUnavailable):
                    await etcd.get(Keys("/supernode").placement)
        async with EtcdClient(EtcdConfig(endpoints, tls=pki.client_tls())) as etcd:
            assert await etcd.get(Keys("/supernode").placement) is not None
            secret = await etcd.get(Keys("/supernode").token_secret)
        # Even with the cluster's secret (a valid node token) and a certificate of the CA,
        # a caller speaks only for the node its certificate names.
        assert secret is not None
        sessions = SessionAuthority(secret.value, clock_ms=lambda: int(time.time() * 1000))
        token = sessions.issue_node_token(cluster.target(1)).token
        as_node_1 = (("authorization", f"Bearer {token}"),)
        elsewhere_cert, elsewhere_key = certs.write_node(
            tmp_path / "pki",
            certs.load_or_make_ca(tmp_path / "pki")[0],
            "elsewhere",
            ["10.9.9.9"],
        )
        impostor = grpc.ssl_channel_credentials(
            ca, elsewhere_key.read_bytes(), elsewhere_cert.read_bytes()
        )
        named_wrong = await lookup_status(peer, impostor, as_node_1, handle)
        assert named_wrong.code is grpc.StatusCode.PERMISSION_DENIED
        assert "does not name node" in named_wrong.details
        # The control: the same call with a certificate naming 127.0.0.1 is served.
        assert (await lookup_status(peer, as_node, as_node_1, handle)).code is grpc.StatusCode.OK
        # The operator's view goes through the same door: with a certificate, or not at all.
        status = [sys.executable, "-m", "supernode.cli", "status", "--json"]
        status += ["--etcd-endpoints", cluster.endpoints, "--etcd-timeout-seconds", "2"]
        cert, key = pki.files()
        with_cert = [*status, "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        with_cert += ["--tls-ca-file", str(pki.ca)]
        seen = await asyncio.to_thread(run_cli, with_cert)
        assert seen.returncode == 0, seen.stderr
        assert len(json.loads(seen.stdout)["nodes"]) == 3
        blind = await asyncio.to_thread(run_cli, status)
        assert blind.returncode == 1 and blind.stderr.count("\n") == 1, blind.stderr

        # A node with another CA's certificate (trusting ours), or with none, cannot join:
        # etcd refuses it, so it never learns the cluster, and it says so and exits.
        outsider_cert, outsider_key = outsider.files()
        for name, transport in (
            ("foreign", ("--tls-cert-file", str(outsider_cert), "--tls-key-file",
                         str(outsider_key), "--tls-ca-file", str(pki.ca))),
            ("plaintext", ("--tls-plaintext",)),
        ):  # fmt: skip
            intruder = SupernodeProcess(
                tmp_path / name,
                "--cluster-etcd-endpoints",
                cluster.endpoints,
                "--cluster-etcd-timeout-seconds",
                "2",
                *transport,
            )
            with pytest.raises(RuntimeError, match="never been a member"):
                intruder.start(timeout=60)
            assert intruder.process is not None and intruder.process.wait(30) == 2  # refused start
        placement_now = await cluster.placement()
        assert placement_now is not None and placement_now.nodes() == set(cluster.targets)
