"""Interop: a Node.js client written from the protos alone (interop/node: @grpc/grpc-js,
@grpc/proto-loader, Node's own Ed25519) against a real supernode, next to the Python SDK.

The Node client creates an account, logs in, registers a device, looks up, looks up many,
searches and watches, verifying every signature it is served, and checks what the server
refuses (each refusal's status and ErrorInfo reason, as the protos name them). The Python SDK
checks the other direction: it looks the Node client's device up (verifying its signature
against the account key), finds the account by search, watches it (the device, then its
unregistration) and registers the device the Node client's watch must see. Once over
plaintext, once over TLS verified with the dev CA of ``supernode certs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from client_sdk import (
    Account,
    Client,
    ClientConfig,
    Device,
    Endpoint,
    EventKind,
    Identity,
    OfflineReason,
    Tls,
)
from supernode import certs
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, Clients, Collector, unique, unused_target
from tests.interop.node_run import NodeRun, run_to_end
from tests.interop.npm import NodeClient

StartSupernode = Callable[..., SupernodeProcess]
NODE_DEVICE = "node-laptop"  # the device id the Node client registers

# What the Node client's deliberate mistakes must be answered with: the gRPC status and the
# google.rpc.ErrorInfo reason, as the protos' "Refused:" lines and errors.proto name them.
EXPECTED_REFUSALS = {
    "handle_taken": ("ALREADY_EXISTS", "HANDLE_TAKEN"),
    "forged_account": ("PERMISSION_DENIED", "SIGNATURE_INVALID"),
    "non_canonical_account": ("INVALID_ARGUMENT", "INVALID_FIELD"),
    "no_token": ("UNAUTHENTICATED", "TOKEN_MISSING"),
    "forged_login": ("PERMISSION_DENIED", "SIGNATURE_INVALID"),
    "challenge_reused": ("UNAUTHENTICATED", "CHALLENGE_USED"),
    "replayed_seq": ("FAILED_PRECONDITION", "STALE_SEQ"),
    "forged_record": ("PERMISSION_DENIED", "SIGNATURE_INVALID"),
    "record_of_another_handle": ("PERMISSION_DENIED", "NOT_OWNER"),
    "unspecified_status": ("INVALID_ARGUMENT", "INVALID_FIELD"),
    "lookup_unknown": ("NOT_FOUND", "ACCOUNT_NOT_FOUND"),
    "after_logout": ("UNAUTHENTICATED", "SESSION_REVOKED"),
}


@dataclasses.dataclass(frozen=True)
class Transport:
    """How the node serves and how both clients reach it."""

    serve_flags: tuple[str, ...]
    node_flags: tuple[str, ...]  # the Node client's
    sdk_config: ClientConfig


def plaintext(_directory: Path) -> Transport:
    return Transport((), (), TEST_CONFIG)


def tls(directory: Path) -> Transport:
    cert, key = certs.ensure_node(directory, "node")
    ca = str(directory / certs.SDK_CA_FILE)
    return Transport(
        ("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        ("--ca", ca),
        dataclasses.replace(TEST_CONFIG, plaintext=False, tls=Tls(ca_file=ca)),
    )


async def sdk_sees_the_node_client(peer: Client, handle: str) -> tuple[Account, Device]:
    """The Node client's account and device as the Python SDK gets them: the record's
    signature verified against the account key (the SDK serves no record that fails)."""
    account = await peer.get_account(handle)
    assert account.display_name == f"Nodé Interop {handle}"
    found = await peer.lookup(handle)
    assert [d.device_id for d in found.devices] == [NODE_DEVICE]
    [device] = found.devices
    assert device.capabilities == ("interop",)
    assert [(e.address, e.port) for e in device.endpoints] == [
        ("192.0.2.10", 4433),
        ("2001:db8::10", 4433),
    ]
    assert handle in [r.handle for r in await peer.search("NODÉ")]  # accents folded
    return account, device


@pytest.mark.parametrize("transport", [plaintext, tls], ids=["plaintext", "tls"])
async def test_node_client_round_trip(
    start_supernode: StartSupernode,
    node_client: NodeClient,
    sdk_clients: Clients,
    tmp_path: Path,
    transport: Callable[[Path], Transport],
) -> None:
    chosen = transport(tmp_path / "pki")
    node = start_supernode(*chosen.serve_flags)
    peer = await sdk_clients.user(node.grpc_target, "python-peer", config=chosen.sdk_config)
    phone_key = Identity.generate().public_key
    await peer.register_device(
        "phone", transport_key=phone_key, endpoints=[Endpoint("192.0.2.1", 5000)]
    )
    handle = unique("node")

    async with contextlib.AsyncExitStack() as stack:
        run = await NodeRun.start(
            node_client,
            *("--target", node.grpc_target, "--handle", handle, "--peer", peer.handle),
            *("--peer-device", "phone", "--expect-device", "tablet", *chosen.node_flags),
        )
        stack.callback(run.kill)
        assert await run.line("step") == "watching"
        account, device = await sdk_sees_the_node_client(peer, handle)
        watch = Collector(peer.watch([handle]))
        stack.push_async_callback(watch.close)
        snapshot = await watch.wait_for(lambda e: e.kind is EventKind.SNAPSHOT)
        assert snapshot.snapshot is not None
        assert [d.device_id for d in snapshot.snapshot[handle].devices] == [NODE_DEVICE]
        # What the Node client's watch waits for.
        tablet_key = Identity.generate().public_key
        await peer.register_device("tablet", transport_key=tablet_key)
        summary = await run.line("summary")
        code, error = await run.finish()
        assert code == 0, error
        # The Node client unregistered its device before it ended: the SDK's watch saw it.
        gone = await watch.wait_for(lambda e: e.kind is EventKind.OFFLINE)
        assert (gone.handle, gone.device_id) == (handle, NODE_DEVICE)
        assert gone.reason is OfflineReason.UNREGISTERED

    assert summary["account_key"] == account.account_key.hex()
    assert summary["transport_key"] == device.transport_key.hex()
    assert summary["registered"] == {
        "device_id": NODE_DEVICE,
        "seq": device.seq,
        "ttl_seconds": 300,
    }
    refusals = {
        name: (refusal["code"], refusal["reason"]) for name, refusal in summary["refusals"].items()
    }
    assert refusals == EXPECTED_REFUSALS, summary["refusals"]
    assert summary["lookup_peer"] == {
        "display_name": "Python-Peer",
        "devices": ["phone"],
        "transport_keys": [phone_key.hex()],
    }
    assert summary["lookup_many"] == {
        "results": [
            {"handle": handle, "devices": [NODE_DEVICE]},
            {"handle": peer.handle, "devices": ["phone"]},
        ],
        "not_found": [f"{handle}-nobody"],
    }
    assert summary["search"]["by_handle"][0] == handle
    assert handle in summary["search"]["by_word"]
    assert summary["watch"]["snapshot"] == ["phone"]
    change = summary["watch"]["change"]
    assert (change["handle"], change["device_id"], change["kind"]) == (
        peer.handle,
        "tablet",
        "CHANGE_KIND_ONLINE",
    )
    assert (await peer.lookup(handle)).devices == ()


async def test_node_client_fails_loudly_when_no_node_answers(node_client: NodeClient) -> None:
    code, out, error = await run_to_end(
        node_client,
        *("--target", unused_target(), "--handle", "nobody-here", "--peer", "nobody"),
        *("--peer-device", "d", "--expect-device", "e", "--deadline-ms", "1000"),
    )
    assert code == 1, (out, error)
    assert "interop client: CreateAccount failed: UNAVAILABLE" in error, error
    assert out == ""


async def test_node_client_refuses_an_incomplete_command_line(node_client: NodeClient) -> None:
    code, out, error = await run_to_end(node_client, "--handle", "someone")
    assert code == 2, (out, error)
    assert "interop client: --target is required" in error and "usage:" in error, error
