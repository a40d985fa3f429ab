import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.records import parse_account, parse_device_record
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle
from supernode.directory.validation import Limits
from tests.unit.factories import device_record

LIMITS = Limits(max_endpoints=2, max_capabilities=2)


@pytest.mark.parametrize("handle", ["abc", "alice", "a.b-c_d", "x" * 32, "0123"])
def test_valid_handles(handle: str) -> None:
    check_handle("handle", handle)


@pytest.mark.parametrize("handle", ["", "ab", "x" * 33, "Alice", "al ice", "al\x00ice", "josé"])
def test_invalid_handles_name_the_field(handle: str) -> None:
    with pytest.raises(InvalidField, match=r"^handle: "):
        check_handle("handle", handle)


def test_valid_record_parses() -> None:
    record = device_record()
    assert parse_device_record(record.SerializeToString(), LIMITS) == record


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"handle": "A"}, r"record\.handle"),
        ({"device_id": ""}, r"record\.device_id: required"),
        ({"device_id": "a/b"}, r"record\.device_id"),
        ({"device_id": "d" * 65}, r"record\.device_id"),
        ({"seq": 0}, r"record\.seq"),
        ({"transport_key": b"k" * 31}, r"record\.transport_key: 31 bytes"),
        ({"status": 0}, r"record\.status"),
        ({"status": 99}, r"record\.status"),
        ({"capabilities": ["a", "b", "c"]}, r"record\.capabilities: 3 given"),
        ({"capabilities": ["Bad Cap"]}, r"record\.capabilities\[0\]"),
        (
            {"endpoints": [pb.Endpoint(address="nope", port=1, protocol=1, type=1)]},
            r"record\.endpoints\[0\]\.address",
        ),
        (
            {"endpoints": [pb.Endpoint(address="::1", port=0, protocol=1, type=1)]},
            r"record\.endpoints\[0\]\.port",
        ),
        (
            {"endpoints": [pb.Endpoint(address="::1", port=1, protocol=0, type=1)]},
            r"record\.endpoints\[0\]\.protocol",
        ),
        (
            {"endpoints": [pb.Endpoint(address="::1", port=1, protocol=1, type=7)]},
            r"record\.endpoints\[0\]\.type",
        ),
        (
            {"endpoints": [pb.Endpoint(address="::1", port=1, protocol=1, type=1)] * 3},
            r"record\.endpoints: 3 given",
        ),
    ],
)
def test_invalid_record_fields_are_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidField, match=message):
        parse_device_record(device_record(**fields).SerializeToString(), LIMITS)


def test_garbage_record_bytes() -> None:
    with pytest.raises(InvalidField, match="not a serialized"):
        parse_device_record(b"\xff\xff\xff", LIMITS)


def test_account_rules() -> None:
    good = pb.Account(handle="alice", account_key=KEY, display_name="Álice")
    assert parse_account(good.SerializeToString(), Limits()).handle == "alice"
    too_long = pb.Account(handle="alice", account_key=KEY, display_name="x" * 65)
    with pytest.raises(InvalidField, match=r"account\.display_name: 65 characters"):
        parse_account(too_long.SerializeToString(), Limits())
    control = pb.Account(handle="alice", account_key=KEY, display_name="a\nb")
    with pytest.raises(InvalidField, match=r"account\.display_name"):
        parse_account(control.SerializeToString(), Limits())
    with pytest.raises(InvalidField, match=r"account\.account_key"):
        parse_account(pb.Account(handle="alice").SerializeToString(), Limits())


def test_signature_checks_key_body_and_domain() -> None:
    owner, other = Identity.generate(), Identity.generate()
    body = b"body"
    signature = owner.sign(DEVICE_RECORD_DOMAIN, body)
    assert signature_is_valid(owner.public_key, DEVICE_RECORD_DOMAIN, body, signature)
    assert not signature_is_valid(other.public_key, DEVICE_RECORD_DOMAIN, body, signature)
    assert not signature_is_valid(owner.public_key, DEVICE_RECORD_DOMAIN, b"bodY", signature)
    assert not signature_is_valid(owner.public_key, b"supernode.v1.Login", body, signature)
    assert not signature_is_valid(b"\x00" * 31, DEVICE_RECORD_DOMAIN, body, signature)


# ---------------------------------------------------------------- exact encodings (issue 16)

KEY = Identity.generate().public_key


def _tag(number: int, wire_type: int) -> bytes:
    value, out = (number << 3) | wire_type, bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def _unknown(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + bytes([len(payload)]) + payload  # short payloads only


def test_unknown_fields_are_refused_with_their_place() -> None:
    account = pb.Account(handle="alice", account_key=KEY).SerializeToString()
    with pytest.raises(InvalidField, match=r"^account: field 15: not a field of the contract"):
        parse_account(account + _unknown(15, b"x" * 100), Limits())
    record = device_record().SerializeToString()
    with pytest.raises(InvalidField, match=r"^signed\.record: field 99: not a field"):
        parse_device_record(record + _unknown(99, b"hidden"), LIMITS)
    endpoint = pb.Endpoint(
        address="192.0.2.1", port=1, protocol=pb.TRANSPORT_PROTOCOL_UDP, type=pb.CANDIDATE_TYPE_HOST
    ).SerializeToString()
    nested = device_record(endpoints=[]).SerializeToString() + wire_field(
        6, endpoint + _unknown(7, b"x")
    )
    with pytest.raises(InvalidField, match=r"^signed\.record\.endpoints\[0\]: field 7"):
        parse_device_record(nested, LIMITS)


def wire_field(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + bytes([len(payload)]) + payload


@pytest.mark.parametrize(
    "raw",
    [
        # fields out of number order
        wire_field(2, KEY) + wire_field(1, b"alice"),
        # a field twice (the last wins when decoding: two encodings of one account)
        wire_field(1, b"alice") + wire_field(1, b"alice") + wire_field(2, KEY),
        # a default value written out (discoverable = false)
        wire_field(1, b"alice") + wire_field(2, KEY) + _tag(4, 0) + b"\x00",
        # an overlong varint (created_at_ms = 1 in two bytes)
        wire_field(1, b"alice") + wire_field(2, KEY) + _tag(5, 0) + b"\x81\x00",
    ],
    ids=["order", "twice", "default", "overlong"],
)
def test_non_canonical_encodings_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidField, match=r"^account: not the canonical encoding"):
        parse_account(raw, Limits())


def test_zone_indexes_are_refused() -> None:
    endpoint = pb.Endpoint(
        address="fe80::1%" + "x" * 500,
        port=1,
        protocol=pb.TRANSPORT_PROTOCOL_UDP,
        type=pb.CANDIDATE_TYPE_HOST,
    )
    with pytest.raises(InvalidField, match=r"record\.endpoints\[0\]\.address: .* zone index"):
        parse_device_record(device_record(endpoints=[endpoint]).SerializeToString(), LIMITS)


def test_weak_keys_in_bodies_are_refused() -> None:
    identity_point = b"\x01" + bytes(31)
    with pytest.raises(InvalidField, match=r"^account\.account_key: a small-order point"):
        parse_account(
            pb.Account(handle="alice", account_key=identity_point).SerializeToString(), Limits()
        )
    with pytest.raises(InvalidField, match=r"^record\.transport_key: a small-order point"):
        parse_device_record(device_record(transport_key=bytes(32)).SerializeToString(), LIMITS)


endpoints = st.builds(
    pb.Endpoint,
    address=st.ip_addresses().map(str),
    port=st.integers(min_value=1, max_value=65535),
    protocol=st.sampled_from([1, 2]),
    type=st.sampled_from([1, 2, 3]),
)
records = st.builds(
    device_record,
    handle=st.from_regex(r"[a-z0-9._-]{3,32}", fullmatch=True),
    device_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    issued_at_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ttl_seconds=st.integers(min_value=0, max_value=2**32 - 1),
    endpoints=st.lists(endpoints, max_size=2),
    capabilities=st.lists(st.from_regex(r"[a-z0-9._/-]{1,64}", fullmatch=True), max_size=2),
    status=st.sampled_from([1, 2, 3]),
)


@given(records)
def test_every_valid_record_round_trips(record: pb.DeviceRecord) -> None:
    raw = record.SerializeToString()
    assert parse_device_record(raw, LIMITS) == record
    assert record.SerializeToString(deterministic=True) == raw


@given(records, st.integers(min_value=10, max_value=2**29 - 1), st.binary(max_size=100))
def test_no_unknown_field_rides_along(record: pb.DeviceRecord, number: int, junk: bytes) -> None:
    raw = record.SerializeToString() + _tag(number, 2) + bytes([len(junk)]) + junk
    with pytest.raises(InvalidField, match=rf"^signed\.record: field {number}: not a field"):
        parse_device_record(raw, LIMITS)


@given(st.binary(max_size=300))
def test_any_bytes_are_parsed_or_refused_by_name(raw: bytes) -> None:
    """Garbage never raises anything but ``InvalidField`` naming the body or its field."""
    with contextlib.suppress(InvalidField):
        parse_device_record(raw, LIMITS)
    with contextlib.suppress(InvalidField):
        parse_account(raw, LIMITS)


@given(records, st.data())
def test_a_signature_covers_every_bit(record: pb.DeviceRecord, data: st.DataObject) -> None:
    owner = Identity.generate()
    body = record.SerializeToString()
    signature = owner.sign(DEVICE_RECORD_DOMAIN, body)
    assert signature_is_valid(owner.public_key, DEVICE_RECORD_DOMAIN, body, signature)
    bit = data.draw(st.integers(min_value=0, max_value=len(body) * 8 - 1))
    flipped = bytearray(body)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not signature_is_valid(owner.public_key, DEVICE_RECORD_DOMAIN, bytes(flipped), signature)
