"""The supernode's STUN responder answers a standard client: aioice's ICE agent."""

import asyncio

from aioice import Connection, stun

from tests.integration.metrics import sample
from tests.integration.process import SupernodeProcess


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
