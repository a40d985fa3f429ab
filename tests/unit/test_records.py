import pytest

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
    good = pb.Account(handle="alice", account_key=b"k" * 32, display_name="Álice")
    assert parse_account(good.SerializeToString(), Limits()).handle == "alice"
    too_long = pb.Account(handle="alice", account_key=b"k" * 32, display_name="x" * 65)
    with pytest.raises(InvalidField, match=r"account\.display_name: 65 characters"):
        parse_account(too_long.SerializeToString(), Limits())
    control = pb.Account(handle="alice", account_key=b"k" * 32, display_name="a\nb")
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
