"""The STUN responder's sans-IO core: what it answers, to whom, and what it never does
(raise, whatever the datagram holds)."""

import contextlib
import struct

from aioice import stun
from hypothesis import example, given
from hypothesis import strategies as st

from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.stun import (
    MAGIC_COOKIE,
    SOFTWARE,
    StunResponder,
    binding_response,
    parse_binding_request,
)


def _request() -> stun.Message:
    return stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)


def classic_request(transaction_id: bytes, change: int | None = None) -> bytes:
    """An RFC 3489 binding request (no cookie: 16 bytes of transaction id), as stund sends."""
    body = b"" if change is None else struct.pack("!HHI", 0x0003, 4, change)
    return struct.pack("!HH", 0x0001, len(body)) + transaction_id + body


def test_binding_request_gets_the_source_address() -> None:
    request = _request()
    raw = binding_response(bytes(request), ("198.18.5.6", 40123))
    assert raw is not None
    response = stun.parse_message(raw)
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("198.18.5.6", 40123)
    assert "MAPPED-ADDRESS" not in response.attributes  # RFC 3489 clients get their own answer
    assert response.attributes["SOFTWARE"] == SOFTWARE
    assert "FINGERPRINT" in response.attributes
    assert len(raw) == 56  # 2.8x a 20-byte request (README "STUN")


def test_software_is_padded_to_a_multiple_of_4() -> None:
    """stund (Debian's ``stun``) refuses a whole answer whose string attribute is not."""
    assert len(SOFTWARE.encode()) % 4 == 0
    raw = binding_response(bytes(_request()), ("198.18.5.6", 1))
    assert raw is not None
    position = 20
    while position < len(raw):
        kind, size = struct.unpack_from("!HH", raw, position)
        assert size % 4 == 0, hex(kind)
        position += 4 + size


def test_ipv6_source() -> None:
    raw = binding_response(bytes(_request()), ("2001:db8::1", 5))
    assert raw is not None
    assert stun.parse_message(raw).attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::1", 5)
    assert len(raw) == 68  # the largest answer: 3.4x


def test_rfc3489_request_gets_mapped_address_and_its_whole_transaction_id() -> None:
    """RFC 5389 section 12.2: copy all 16 bytes, answer with MAPPED-ADDRESS only."""
    transaction_id = bytes(range(16))
    for change in (None, 0):
        raw = binding_response(classic_request(transaction_id, change), ("198.18.0.7", 4242))
        assert raw is not None
        kind, length = struct.unpack_from("!HH", raw)
        assert (kind, length, raw[4:20]) == (0x0101, 12, transaction_id)
        attribute, size, family, port = struct.unpack_from("!HHxBH", raw, 20)
        assert (attribute, size, family, port) == (0x0001, 8, 1, 4242)
        assert raw[28:32] == bytes([198, 18, 0, 7])


def test_change_requests_are_not_answered_from_the_same_address() -> None:
    """One address: answering "from another" one would mislead the client's NAT test."""
    for flags in (0x2, 0x4, 0x6):
        assert binding_response(classic_request(bytes(16), flags), ("198.18.0.1", 1)) is None


def test_garbage_and_non_requests_are_dropped() -> None:
    assert binding_response(b"", ("198.18.0.1", 1)) is None
    assert binding_response(b"\x00" * 19, ("198.18.0.1", 1)) is None
    assert binding_response(b"GET / HTTP/1.1\r\n\r\n", ("198.18.0.1", 1)) is None
    indication = stun.Message(
        message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION
    )
    assert binding_response(bytes(indication), ("198.18.0.1", 1)) is None
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
    assert binding_response(bytes(response), ("198.18.0.1", 1)) is None
    assert binding_response(bytes(_request()) + b"\x00" * 2000, ("198.18.0.1", 1)) is None


def with_attribute(kind: int, value: bytes, stated: int | None = None) -> bytes:
    """A binding request carrying one attribute, its length stated as ``stated``."""
    size = len(value) if stated is None else stated
    attribute = struct.pack("!HH", kind, size) + value + bytes(-len(value) % 4)
    header = struct.pack("!HHI", 0x0001, len(attribute), MAGIC_COOKIE) + bytes(12)
    return header + attribute


def test_a_short_priority_no_longer_escapes() -> None:
    """aioice's parse_message raises struct.error for this; the responder must not."""
    raw = with_attribute(0x0024, b"ab")  # PRIORITY is 4 bytes
    with contextlib.suppress(struct.error):  # aioice's behaviour: why we read the framing
        stun.parse_message(raw)
    assert binding_response(raw, ("198.18.0.1", 1)) is not None  # framing is fine: answered


def test_a_wrong_fingerprint_is_dropped() -> None:
    request = _request()
    request.add_fingerprint()
    raw = bytearray(bytes(request))
    assert binding_response(bytes(raw), ("198.18.0.1", 1)) is not None
    raw[-1] ^= 1
    assert binding_response(bytes(raw), ("198.18.0.1", 1)) is None


attributes = st.tuples(
    st.integers(min_value=0, max_value=0xFFFF),
    st.binary(max_size=40),
    st.one_of(st.none(), st.integers(min_value=0, max_value=0xFFFF)),
)


@given(st.lists(attributes, max_size=5), st.booleans(), st.binary(min_size=12, max_size=12))
@example([(0x0024, b"ab", None)], True, bytes(12))
@example([(0x8028, b"", 4)], True, bytes(12))
def test_malformed_attribute_lengths_never_raise(
    attrs: list[tuple[int, bytes, int | None]], cookie: bool, transaction_id: bytes
) -> None:
    body = b"".join(
        struct.pack("!HH", kind, len(value) if stated is None else stated)
        + value
        + bytes(-len(value) % 4)
        for kind, value, stated in attrs
    )
    header = struct.pack("!HHI", 0x0001, len(body), MAGIC_COOKIE if cookie else 7)
    raw = header + transaction_id + body
    answer = binding_response(raw, ("198.18.0.1", 9))
    lengths_hold = all(stated is None or stated == len(v) for _, v, stated in attrs)
    if answer is not None:
        assert answer[8 if cookie else 4 : 20] == raw[8 if cookie else 4 : 20]
    elif lengths_hold and not any(kind in (0x0003, 0x8028) for kind, _, _ in attrs):
        raise AssertionError("a well-framed binding request went unanswered")


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=0xFFFF))
def test_any_datagram_is_answered_or_dropped_never_raised(data: bytes, word: int) -> None:
    for datagram in (data, struct.pack("!HH", 0x0001, len(data)) + data):
        request = parse_binding_request(datagram)
        answer = binding_response(datagram, ("2001:db8::9", word or 1))
        assert (answer is None) == (request is None or request.change_requested)


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def test_each_source_address_is_rate_limited() -> None:
    now = [0.0]
    outcomes: list[str] = []
    limiter = TokenBuckets(rate=1.0, burst=3, clock=lambda: now[0])
    responder = StunResponder(outcomes.append, limiter)
    transport = _Transport()
    responder.connection_made(transport)  # type: ignore[arg-type]
    request = bytes(_request())
    for port in range(10):  # one address, any port: one bucket
        responder.datagram_received(request, ("198.18.0.1", 1000 + port))
    responder.datagram_received(request, ("198.18.0.2", 1))  # another source: its own bucket
    responder.datagram_received(b"junk", ("198.18.0.1", 1))  # dropped costs no token
    assert outcomes.count("answered") == 4 and outcomes.count("rate_limited") == 7
    assert outcomes.count("dropped") == 1
    now[0] += 1.0  # one token back
    responder.datagram_received(request, ("198.18.0.1", 1))
    assert outcomes[-1] == "answered" and len(transport.sent) == 5
