"""Logs at INFO hold no token, no signature and no endpoint address of a user's record,
as text and as JSON lines (``--log-format json``).

A node runs at INFO (the default) through a typical flow: accounts created, logins, devices
registered with endpoints, lookups, a search, a watch, a peer-to-peer connect, logout. The
node's whole stderr (our log and gRPC's own) and every log record of the test's process
(the SDK's and its libraries', at INFO) are then searched for every token the clients held,
every record's signature (raw bytes' base64, urlsafe base64 and hex), every endpoint
address the records published and the host addresses the connect's ICE candidates carried
(aioice logs each candidate pair at INFO unless told otherwise: the SDK tells it,
``client_sdk.p2p.ice.quiet_candidate_logs``).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import re
from pathlib import Path

import pytest
from aioice.ice import get_host_addresses

from client_sdk import Client, Endpoint, Identity, P2PSettings
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.p2p_support import PLAINTEXT, alice_and_bob, listening
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.sdk_support import StartSupernode
from tests.integration.test_session_revocation import _token_of

# Documentation addresses (RFC 5737, RFC 3849): unmistakable in a log if they leak.
PUBLISHED = [Endpoint("198.51.100.23", 4242), Endpoint("2001:db8::77", 4343)]


def _signature_forms(signature: bytes) -> list[str]:
    return [
        base64.b64encode(signature).decode(),
        base64.urlsafe_b64encode(signature).decode().rstrip("="),
        signature.hex(),
    ]


_GRPC_CORE_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def _assert_json_lines(lines: list[str]) -> None:
    """Every line of ours is one JSON object with the documented keys (supernode.logs); the
    ready line carries its values as fields. gRPC's C core writes its own lines (``I1208
    00:46:18.626083 31948 fork_posix.cc:71] ...``), which no Python setting reformats."""
    ours = [line for line in lines if line.strip() and not _GRPC_CORE_LINE.match(line)]
    parsed = [json.loads(line) for line in ours]
    for record in parsed:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
    ready = next(r for r in parsed if r["msg"].startswith("supernode ready "))
    assert ready["level"] == "INFO" and ready["logger"] == "supernode"
    assert {"version", "grpc", "metrics", "data_dir", "tls", "workers"} <= ready.keys()
    assert ready["tls"] is False


def _endpoint_forms(address: str, port: int) -> list[str]:
    """A loopback address is the node's own too (its listen address is logged at start):
    only with the record's port is it the record's."""
    if ipaddress.ip_address(address).is_loopback:
        return [f"{address}:{port}"]
    return [address]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_info_logs_hold_no_token_signature_or_endpoint(
    log_format: str,
    start_supernode: StartSupernode,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node: SupernodeProcess = start_supernode("--log-level", "info", "--log-format", log_format)
    caplog.set_level(logging.INFO)  # every logger: the SDK and the libraries it embeds
    secrets: dict[str, str] = {}  # text that must not appear -> what it is
    stun_host, stun_port = node.stun_address.rsplit(":", 1)
    settings = P2PSettings(stun_server=(stun_host, int(stun_port)), direct=True)

    async with alice_and_bob(node.grpc_target, settings) as (alice, bob):
        carol = Client(node.grpc_target, Identity.generate(), "carol", config=PLAINTEXT)
        try:
            await carol.create_account("Carol")
            await carol.register_device(
                "desk", transport_key=Identity.generate().public_key, endpoints=PUBLISHED
            )
            presence = await alice.lookup("carol")
            await alice.lookup_many(["carol", "bob", "nobody"])
            await alice.search("carol")
            watch = alice.watch(["carol"])
            async with asyncio.timeout(10):
                await anext(aiter(watch))
            await watch.close()
            accepting = await listening(bob)
            async with asyncio.timeout(30):
                caller = await alice.connect("bob")
            async with asyncio.timeout(30):
                callee = await accepting
            await caller.close()
            await callee.close()
            # The ICE host candidates of the connect (offers carry them, not records).
            for address in get_host_addresses(use_ipv4=True, use_ipv6=True):
                secrets[address] = "a host ICE candidate's address"
            for client in (alice, bob, carol):
                secrets[_token_of(client)] = f"{client.handle}'s token"
            for handle in ("alice", "bob", "carol"):
                for found in (await carol.lookup(handle)).devices:
                    for form in _signature_forms(found.signature):
                        secrets[form] = f"{handle}'s record signature"
                    for endpoint in found.endpoints:
                        for form in _endpoint_forms(endpoint.address, endpoint.port):
                            secrets[form] = f"{handle}'s endpoint"
            assert {e.address for e in presence.devices[0].endpoints} == {
                e.address for e in PUBLISHED
            }
            await carol.logout()
        finally:
            await carol.close()

    async with DirectoryConnection(node.grpc_target) as raw:  # and the plain protocol's
        dave = await new_user(raw, "dave")
        signed = device(dave, "dave", "phone", seq=1)
        await raw.register_device(signed)
        await raw.lookup("dave")
        assert raw.token is not None
        secrets[raw.token] = "dave's token"
        for form in _signature_forms(signed.signature):
            secrets[form] = "dave's record signature"
        await raw.logout()

    assert node.terminate() == 0
    node_log = "".join(node.log)
    sdk_log = "\n".join(record.getMessage() for record in caplog.records)
    assert "supernode ready" in node_log and "stopped cleanly" in node_log  # it was captured
    assert len(secrets) > 10
    if log_format == "json":
        _assert_json_lines(node.log)
    leaks = [
        f"{what} in the {where} log"
        for text, what in secrets.items()
        for where, log in (("node", node_log), ("SDK", sdk_log))
        if text in log
    ]
    assert leaks == []
