"""The hand-framed responses must parse with the protobuf runtime into the same messages."""

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol import wire
from client_sdk.protocol.v1 import directory_pb2 as pb


def _device(n: int, blob: bytes) -> pb.Device:
    return pb.Device(
        signed=pb.SignedDeviceRecord(record=blob * n, signature=b"s" * 64),
        expires_at_ms=n,
        attached_supernode=f"node{n}",
    )


def _account(handle: str, name: str) -> pb.Account:
    return pb.Account(handle=handle, account_key=b"k" * 32, display_name=name, created_at_ms=7)


@given(
    handle=st.from_regex(r"[a-z0-9._-]{3,32}", fullmatch=True),
    name=st.text(max_size=64),
    sizes=st.lists(st.integers(min_value=0, max_value=300), max_size=5),
    blob=st.binary(min_size=1, max_size=3),
)
def test_lookup_response_framing_matches_protobuf(
    handle: str, name: str, sizes: list[int], blob: bytes
) -> None:
    account = _account(handle, name)
    devices = [_device(n, blob) for n in sizes]
    framed = wire.lookup_response(
        account.SerializeToString(), [d.SerializeToString() for d in devices]
    )
    assert pb.LookupResponse.FromString(framed) == pb.LookupResponse(
        account=account, devices=devices
    )


@given(
    handles=st.lists(st.from_regex(r"[a-z0-9]{3,10}", fullmatch=True), max_size=6),
    missing=st.lists(st.from_regex(r"[a-z0-9]{3,10}", fullmatch=True), max_size=4),
)
def test_lookup_many_framing_matches_protobuf(handles: list[str], missing: list[str]) -> None:
    results = [
        pb.LookupResponse(account=_account(h, h), devices=[_device(3, b"x")]) for h in handles
    ]
    framed = wire.lookup_many_response([r.SerializeToString() for r in results], missing)
    assert pb.LookupManyResponse.FromString(framed) == pb.LookupManyResponse(
        results=results, not_found=missing
    )


def test_long_payload_uses_multibyte_length() -> None:
    account = _account("alice", "x" * 64)
    big = _device(1, b"y" * 20_000)
    framed = wire.lookup_response(account.SerializeToString(), [big.SerializeToString()])
    assert pb.LookupResponse.FromString(framed).devices[0] == big


def test_get_account_response_framing() -> None:
    account = _account("bob", "Bob")
    assert (
        pb.GetAccountResponse.FromString(
            wire.get_account_response(account.SerializeToString())
        ).account
        == account
    )
