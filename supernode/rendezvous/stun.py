"""A STUN binding responder (RFC 5389), so devices learn their server-reflexive address.

The sans-IO core (:func:`parse_binding_request`, :func:`binding_response`) takes a datagram
and its source and returns the answer, or None; :class:`StunResponder` is the asyncio shell,
which also limits how often one source address is answered.

Only binding requests are answered; anything else, including garbage, is dropped silently,
as RFC 5389 section 7.3 asks of unknown or malformed messages on a UDP port. The request is
read here rather than by ``aioice.stun.parse_message``: a binding request's attributes carry
nothing the answer needs, and aioice decodes every attribute it knows, raising
``struct.error`` (not ``ValueError``) for one of the wrong length (a 2-byte PRIORITY), which
escaped the protocol callback and logged a traceback per packet. Here every length is checked
against the datagram and nothing can raise. The answer is still encoded by aioice (the codec
the SDK's ICE agent parses with).

Two generations of client are answered, as RFC 5389 section 12.2 says:

* RFC 5389 (the magic cookie 0x2112A442 after the length): XOR-MAPPED-ADDRESS, SOFTWARE and
  FINGERPRINT, with the 12-byte transaction id copied.
* RFC 3489 (no cookie; the transaction id is all 16 bytes after the length, as Debian's
  ``stun`` client sends it): MAPPED-ADDRESS only, with all 16 bytes copied. Such a client
  may ask for the answer from another address or port (CHANGE-REQUEST, to classify its NAT);
  this responder has one address, so it does not answer those rather than answer falsely.

Amplification (README "STUN"): the largest answer, to a 20-byte request from an IPv6 source,
is 68 bytes (3.4x); from IPv4, 56 bytes (2.8x); an RFC 3489 answer is 32 bytes from IPv4 (44
from IPv6) for a 20-28 byte request. Answers per source address are rate limited
(``stun_rate_per_second``).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aioice import stun

from supernode.ratelimit import TokenBuckets

log = logging.getLogger(__name__)

# Padded with spaces to a multiple of 4 bytes: RFC 3489 parsers (stund's, Debian's ``stun``)
# read attribute lengths as multiples of 4 and reject the whole answer otherwise.
SOFTWARE = "supernode   "
MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")  # type, length, cookie, transaction id
ATTRIBUTE = struct.Struct("!HH")  # type, length
BINDING_REQUEST = 0x0001
BINDING_RESPONSE = 0x0101
MAPPED_ADDRESS = 0x0001
CHANGE_REQUEST = 0x0003  # RFC 3489 section 11.2.4: flags 0x4 (change IP), 0x2 (change port)
FINGERPRINT = 0x8028
# Larger datagrams are not binding requests anyone sends (RFC 5389 section 7.1: a client
# keeps below the path MTU, 576 bytes when it is unknown).
MAX_REQUEST_BYTES = 1280


@dataclass(frozen=True, slots=True)
class BindingRequest:
    """A well-formed binding request: what its answer must echo."""

    transaction_id: bytes  # 12 bytes (RFC 5389) or 16 (RFC 3489: the cookie's place too)
    classic: bool  # RFC 3489: no magic cookie
    change_requested: bool  # RFC 3489 CHANGE-REQUEST asking for another address or port


def parse_binding_request(data: bytes) -> BindingRequest | None:
    """The binding request in ``data``, or None when it is not a well-formed one.

    Checks the framing only (RFC 5389 sections 6 and 15): the header, the two zero top bits
    of the type, the stated length against the datagram, every attribute inside it (padded
    to 4 bytes), and the FINGERPRINT when there is one. Never raises.
    """
    if not HEADER.size <= len(data) <= MAX_REQUEST_BYTES:
        return None
    message_type, length, cookie, _ = HEADER.unpack_from(data)
    if message_type != BINDING_REQUEST or length != len(data) - HEADER.size or length % 4:
        return None
    change_requested = False
    position = HEADER.size
    while position < len(data):
        if position + ATTRIBUTE.size > len(data):
            return None
        kind, size = ATTRIBUTE.unpack_from(data, position)
        start = position + ATTRIBUTE.size
        end = start + size
        if end > len(data):
            return None
        if kind == CHANGE_REQUEST and size == 4:
            change_requested = struct.unpack_from("!I", data, start)[0] & 0x6 != 0
        elif kind == FINGERPRINT and (
            size != 4
            or end != len(data)
            or struct.unpack_from("!I", data, start)[0] != stun.message_fingerprint(data[:position])
        ):
            return None
        position = end + (-size % 4)
    if position != len(data):
        return None
    classic = cookie != MAGIC_COOKIE
    transaction_id = data[4 if classic else 8 : HEADER.size]
    return BindingRequest(transaction_id, classic, change_requested)


def binding_response(data: bytes, source: tuple[str, int]) -> bytes | None:
    """The answer to one datagram from ``source``, or None when it deserves none."""
    request = parse_binding_request(data)
    if request is None or request.change_requested:
        return None
    if request.classic:
        mapped = stun.pack_address(source)
        body = ATTRIBUTE.pack(MAPPED_ADDRESS, len(mapped)) + mapped
        return struct.pack("!HH", BINDING_RESPONSE, len(body)) + request.transaction_id + body
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = (source[0], source[1])
    response.attributes["SOFTWARE"] = SOFTWARE
    response.add_fingerprint()
    return bytes(response)


class StunResponder(asyncio.DatagramProtocol):
    """The asyncio shell around :func:`binding_response`, rate limited per source address.

    ``count`` is told each datagram's outcome: ``answered``, ``dropped`` (not a binding
    request we answer) or ``rate_limited`` (the source is over its rate; nothing is sent, so
    a spoofed source cannot be flooded through us).
    """

    def __init__(self, count: Callable[[str], None], limiter: TokenBuckets | None = None) -> None:
        self._count = count
        self._limiter = limiter
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; it quacks alike.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = binding_response(data, addr)
        if response is None:
            self._count("dropped")
            return
        if self._limiter is not None and not self._limiter.allow(addr[0]):
            self._count("rate_limited")
            return
        assert self._transport is not None
        self._transport.sendto(response, addr)
        self._count("answered")

    def error_received(self, exc: Exception) -> None:
        log.debug("stun socket error: %s", exc)


def source_limiter(rate_per_second: float, burst: int) -> TokenBuckets | None:
    """Token buckets per source IP address; None (no limit) when ``rate_per_second`` is 0."""
    if rate_per_second <= 0:
        return None
    return TokenBuckets(rate=rate_per_second, burst=burst, clock=time.monotonic)


async def start_stun(
    host: str, port: int, count: Callable[[str], None], limiter: TokenBuckets | None = None
) -> tuple[asyncio.DatagramTransport, int]:
    """Bind the responder; returns the transport and the bound port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: StunResponder(count, limiter), local_addr=(host, port)
    )
    bound_port = transport.get_extra_info("sockname")[1]
    return transport, int(bound_port)
