"""A STUN binding responder (RFC 5389), so devices learn their server-reflexive address.

Message parsing and encoding are aioice's (``aioice.stun``), the same codec the SDK's ICE
agent uses; this module only decides what to answer. Only binding requests are answered;
anything else, including garbage, is dropped silently as RFC 5389 section 7.3 asks of
unknown or malformed messages on a UDP port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from aioice import stun

log = logging.getLogger(__name__)

SOFTWARE = "supernode"


def binding_response(data: bytes, source: tuple[str, int]) -> bytes | None:
    """The answer to one datagram from ``source``, or None when it deserves none."""
    try:
        request = stun.parse_message(data)
    except ValueError:
        return None
    if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
        return None
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = (source[0], source[1])
    response.attributes["MAPPED-ADDRESS"] = (source[0], source[1])  # for RFC 3489 clients
    response.attributes["SOFTWARE"] = SOFTWARE
    response.add_fingerprint()
    return bytes(response)


class StunResponder(asyncio.DatagramProtocol):
    """The asyncio shell around :func:`binding_response`."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; it quacks alike.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = binding_response(data, addr)
        if response is None:
            self._count("dropped")
            return
        assert self._transport is not None
        self._transport.sendto(response, addr)
        self._count("answered")

    def error_received(self, exc: Exception) -> None:
        log.debug("stun socket error: %s", exc)


async def start_stun(
    host: str, port: int, count: Callable[[str], None]
) -> tuple[asyncio.DatagramTransport, int]:
    """Bind the responder; returns the transport and the bound port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: StunResponder(count), local_addr=(host, port)
    )
    bound_port = transport.get_extra_info("sockname")[1]
    return transport, int(bound_port)
