"""The supernode's STUN responder answers standard clients: aioice's ICE agent and Debian's
RFC 3489 ``stun`` client (stund's); and it rate-limits each source address."""

import asyncio
import re
from collections.abc import Callable

import pytest
from aioice import Connection, stun

from supernode.debian import STUN_CLIENT_PACKAGE, PackageError, ensure_installed
from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess
from tests.integration.waiting import eventually


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[bytes, tuple[str, int]]] = (
            asyncio.get_running_loop().create_future()
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result((data, addr))


async def test_binding_request_over_udp(supernode: SupernodeProcess) -> None:
    host, port = supernode.stun_address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Once, local_addr=("127.0.0.1", 0))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transport.sendto(bytes(request), (host, int(port)))
        transport.sendto(b"not stun", (host, int(port)))
        async with asyncio.timeout(5):
            data, _ = await protocol.answer
        response = stun.parse_message(data)
        assert response.transaction_id == request.transaction_id
        assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")
    finally:
        transport.close()
    metrics = supernode.metrics()
    assert sample(metrics, "supernode_stun_requests_total", outcome="answered") >= 1


async def test_ice_agent_learns_its_server_reflexive_address(supernode: SupernodeProcess) -> None:
    host, port = supernode.stun_address.rsplit(":", 1)
    agent = Connection(ice_controlling=True, stun_server=(host, int(port)))
    try:
        async with asyncio.timeout(15):
            await agent.gather_candidates()
        host_candidates = {(c.host, c.port) for c in agent.local_candidates if c.type == "host"}
        reflexive = [c for c in agent.local_candidates if c.type == "srflx"]
        assert host_candidates, "no host candidate: the machine has no non-loopback interface"
        # On one machine the reflexive address is the host address it was sent from.
        assert reflexive and all((c.host, c.port) in host_candidates for c in reflexive)
    finally:
        await agent.close()


async def test_debians_stun_client_is_not_blocked(supernode: SupernodeProcess) -> None:
    """stund's client once said "Blocked": it sends RFC 3489 requests (no magic cookie), and
    the answer replaced 4 of its 16 transaction-id bytes by the cookie and carried a
    9-byte SOFTWARE it refuses. Its NAT test asks for answers from another address too,
    which one address cannot give: on loopback it reports "Firewall" after test I passes."""
    try:
        binary = await asyncio.to_thread(ensure_installed, STUN_CLIENT_PACKAGE)
    except PackageError as error:
        pytest.fail(f"this test needs Debian's stun client and could not install it: {error}")
    process = await asyncio.create_subprocess_exec(
        binary,
        "-v",
        supernode.stun_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output = (await process.communicate())[0].decode(errors="replace")
    assert "Blocked" not in output, output[-2000:]
    assert re.search(r"^test I = 1$", output, re.MULTILINE), output[-2000:]
    assert "Bad length" not in output, output[-2000:]
    assert re.search(r"MappedAddress = 127\.0\.0\.1:\d+", output), output[-2000:]


async def test_each_source_is_rate_limited(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    # A refill of one token per 1,000 s: what the burst allows is all there is.
    node = start_supernode("--stun-rate-per-second", "0.001", "--stun-burst", "3")
    host, port = node.stun_address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Once, local_addr=("127.0.0.1", 0))
    try:
        request = bytes(
            stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        )
        for _ in range(10):
            transport.sendto(request, (host, int(port)))

        async def all_counted() -> bool:
            metrics = node.metrics()
            return (
                sample(metrics, "supernode_stun_requests_total", outcome="answered")
                + sample(metrics, "supernode_stun_requests_total", outcome="rate_limited")
                == 10
            )

        await eventually(all_counted, what="10 STUN requests counted")
        metrics = node.metrics()
        assert sample(metrics, "supernode_stun_requests_total", outcome="answered") == 3
        assert sample(metrics, "supernode_stun_requests_total", outcome="rate_limited") == 7
        async with asyncio.timeout(5):
            await protocol.answer
    finally:
        transport.close()
