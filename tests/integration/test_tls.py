"""TLS on the public port, as the issue's on-path observer meets it: the SDK talks to a node
over TLS verified with a CA file or a pinned certificate; a client that trusts the wrong CA
or pin, or speaks plaintext, gets nothing; workers serve the same certificate; a node never
serves plaintext unless told, and never on a public address unless told that too."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from client_sdk import (
    CertificateMismatch,
    Client,
    ClientConfig,
    Endpoint,
    Identity,
    Tls,
    Unavailable,
)
from client_sdk.backoff import Backoff
from client_sdk.transport import DirectoryConnection
from supernode import certs
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.sdk_support import TEST_CONFIG, unique
from tests.integration.tap import RecordingProxy
from tests.integration.test_workers import CONNECTIONS, OWN_CONNECTION, lookups_served

StartSupernode = Callable[..., SupernodeProcess]
# TLS instead of the suite's plaintext; patient as the suite's config.
TLS_CONFIG = dataclasses.replace(TEST_CONFIG, plaintext=False)
# A client that must fail: two quick tries.
FAILING = dataclasses.replace(
    TLS_CONFIG,
    max_attempts=2,
    call_deadline_seconds=2.0,
    backoff=Backoff(initial_seconds=0.01, maximum_seconds=0.05),
)


@dataclasses.dataclass(frozen=True)
class Pki:
    directory: Path
    node_cert: Path
    node_key: Path
    other_ca: Path  # a CA that signed nothing of ours

    @property
    def sdk_ca(self) -> Path:
        return self.directory / certs.SDK_CA_FILE

    def serve_flags(self) -> tuple[str, ...]:
        return ("--tls-cert-file", str(self.node_cert), "--tls-key-file", str(self.node_key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    cert, key = certs.ensure_node(directory, "node")
    other = directory / "other-ca.pem"
    other.write_bytes(certs.make_ca("someone else's CA").cert_pem)
    return Pki(directory, cert, key, other)


@pytest.fixture
def tls_node(start_supernode: StartSupernode, pki: Pki) -> SupernodeProcess:
    return start_supernode(*pki.serve_flags())


async def register_and_look_up(target: str, config: ClientConfig) -> None:
    """Create accounts (log in), register a device, look it up: the SDK's whole path."""
    async with (
        Client(target, Identity.generate(), unique("bob"), config=config) as bob,
        Client(target, Identity.generate(), unique("alice"), config=config) as alice,
    ):
        await bob.create_account("Bob")
        await alice.create_account("Alice")
        key = Identity.generate().public_key
        await bob.register_device("laptop", transport_key=key, endpoints=[Endpoint("192.0.2.1", 1)])
        found = await alice.lookup(bob.handle)
        assert [(d.device_id, d.transport_key) for d in found.devices] == [("laptop", key)]


async def test_sdk_over_tls_verified_with_the_ca_file(tls_node: SupernodeProcess, pki: Pki) -> None:
    config = dataclasses.replace(TLS_CONFIG, tls=Tls(ca_file=str(pki.sdk_ca)))
    await register_and_look_up(tls_node.grpc_target, config)


async def test_sdk_over_tls_with_a_pinned_certificate(tls_node: SupernodeProcess, pki: Pki) -> None:
    pin = certs.fingerprint(pki.node_cert.read_bytes())
    config = dataclasses.replace(TLS_CONFIG, tls=Tls(pinned_sha256=(pin.upper(),)))
    await register_and_look_up(tls_node.grpc_target, config)


async def test_a_client_trusting_another_ca_gets_a_clear_refusal(
    tls_node: SupernodeProcess, pki: Pki
) -> None:
    config = dataclasses.replace(FAILING, tls=Tls(ca_pem=pki.other_ca.read_bytes()))
    async with Client(tls_node.grpc_target, Identity.generate(), "mallory", config=config) as c:
        with pytest.raises(Unavailable) as refused:
            await c.create_account()
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message, refused.value.message


async def test_a_wrong_pin_is_refused_before_any_call(tls_node: SupernodeProcess) -> None:
    config = dataclasses.replace(FAILING, tls=Tls(pinned_sha256=("00" * 32,)))
    async with Client(tls_node.grpc_target, Identity.generate(), "mallory", config=config) as c:
        with pytest.raises(CertificateMismatch) as refused:
            await c.create_account()
    assert refused.value.target == tls_node.grpc_target
    assert "not pinned" in refused.value.message


async def test_a_plaintext_client_gets_nothing_from_a_tls_port(tls_node: SupernodeProcess) -> None:
    config = dataclasses.replace(FAILING, plaintext=True)
    async with Client(tls_node.grpc_target, Identity.generate(), "eve", config=config) as c:
        with pytest.raises(Unavailable):
            await c.create_account()
    assert "serving PLAINTEXT" not in "".join(tls_node.log)


async def test_workers_serve_the_same_certificate(
    start_supernode: StartSupernode, pki: Pki
) -> None:
    node = start_supernode("--workers", "2", *pki.serve_flags())
    credentials = grpc.ssl_channel_credentials(pki.sdk_ca.read_bytes())
    connections = [
        DirectoryConnection(node.grpc_target, options=OWN_CONNECTION, credentials=credentials)
        for _ in range(CONNECTIONS)
    ]
    try:
        writer = connections[0]
        await new_user(writer, "alice")
        for connection in connections:  # whichever process the kernel gave each to
            connection.token = writer.token
            assert (await connection.lookup("alice")).devices == []
        worker_url = f"http://{node.workers[0]['metrics']}/metrics"
        assert lookups_served(worker_url) > 0  # the worker answered some, over TLS
    finally:
        for connection in connections:
            await connection.close()


async def what_an_observer_sees(
    target: str, credentials: grpc.ChannelCredentials | None
) -> tuple[bytes, list[bytes]]:
    """Log in, register a device and look it up through a recording proxy: the bytes on
    the wire, and the secrets that must not be among them (token, handle, endpoint)."""
    proxy = await RecordingProxy(target).start()
    try:
        async with DirectoryConnection(proxy.address, credentials=credentials) as connection:
            handle = unique("victim")
            identity = await new_user(connection, handle)
            await connection.register_device(device(identity, handle, "phone"))
            assert len((await connection.lookup(handle)).devices) == 1
            assert connection.token is not None
            secrets = [connection.token.encode(), handle.encode(), b"198.18.0.10"]
        return bytes(proxy.recorded), secrets
    finally:
        await proxy.close()


async def test_an_on_path_observer_sees_no_token_handle_or_endpoint(
    tls_node: SupernodeProcess, start_supernode: StartSupernode, pki: Pki, tmp_path: Path
) -> None:
    """The issue's observer, re-measured: on plaintext the token, the handle and the
    endpoint cross the wire readable (the control); over TLS none of them does."""
    plaintext = start_supernode(data_dir=tmp_path / "plaintext")
    wire, secrets = await what_an_observer_sees(plaintext.grpc_target, None)
    assert all(secret in wire for secret in secrets)
    credentials = grpc.ssl_channel_credentials(pki.sdk_ca.read_bytes())
    wire, secrets = await what_an_observer_sees(tls_node.grpc_target, credentials)
    assert len(wire) > 1000  # it did see the conversation, encrypted
    assert [secret for secret in secrets if secret in wire] == []


def test_plaintext_is_logged_as_such(supernode: SupernodeProcess) -> None:
    supernode.wait_for("serving PLAINTEXT")


def test_a_public_address_without_tls_does_not_start(tmp_path: Path) -> None:
    """One line naming the setting, exit code 2, no traceback; nothing bound or created."""
    serve = [sys.executable, "-m", "supernode.cli", "serve", "--data-dir", str(tmp_path / "d")]
    public = subprocess.run(
        [*serve, "--listen", "0.0.0.0:0", "--tls-plaintext"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert public.returncode == 2, public.stderr
    assert public.stderr.count("\n") == 1 and "Traceback" not in public.stderr
    assert "--tls-public-plaintext" in public.stderr and "--tls-cert-file" in public.stderr
    bare = subprocess.run([*serve], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "--tls-plaintext" in bare.stderr, bare.stderr
    assert not (tmp_path / "d").exists()
