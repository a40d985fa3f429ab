"""What a supernode serves is checked against the account key before the app sees it."""

import pytest

from client_sdk.errors import KeyChanged, SignatureError
from client_sdk.identity import Identity
from client_sdk.pins import PinStore
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.types import CandidateType, DeviceStatus, Endpoint, TransportProtocol
from client_sdk.verify import (
    check_account_signature,
    verify_account,
    verify_device,
    verify_presence,
)
from tests.unit.sdk_factories import account, lookup, served_device

BOB = Identity.generate()
MALLORY = Identity.generate()


def test_a_valid_record_becomes_a_public_device() -> None:
    served = served_device(BOB, "bob", "phone", seq=7, status=pb.DEVICE_STATUS_AWAY)
    device = verify_device(served, BOB.public_key, "bob", "phone")
    assert (device.handle, device.device_id, device.seq) == ("bob", "phone", 7)
    assert device.status is DeviceStatus.AWAY
    assert device.endpoints == (
        Endpoint("192.0.2.1", 4000, TransportProtocol.UDP, CandidateType.HOST),
    )
    assert device.capabilities == ("audio",)
    assert device.record == served.signed.record and device.signature == served.signed.signature
    assert device.attached_supernode == "n1"


def test_a_record_signed_by_another_key_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify_device(served_device(MALLORY, "bob"), BOB.public_key, "bob")


def test_a_tampered_record_is_refused() -> None:
    served = served_device(BOB, "bob")
    record = pb.DeviceRecord.FromString(served.signed.record)
    record.endpoints[0].address = "203.0.113.66"  # a supernode redirecting calls to itself
    served.signed.record = record.SerializeToString()
    with pytest.raises(SignatureError):
        verify_device(served, BOB.public_key, "bob")


def test_a_valid_record_of_another_device_or_handle_cannot_be_passed_off() -> None:
    with pytest.raises(SignatureError, match="served as"):
        verify_device(served_device(BOB, "bob", "laptop"), BOB.public_key, "bob", "phone")
    # Bob's own key signed a record naming "bobby": not a device of "bob".
    with pytest.raises(SignatureError, match="served as a device of"):
        verify_device(served_device(BOB, "bobby"), BOB.public_key, "bob")


def test_presence_verifies_every_device_and_pins_the_key() -> None:
    pins = PinStore.in_memory()
    response = lookup(BOB, "bob", served_device(BOB, "bob", "a"), served_device(BOB, "bob", "b"))
    presence = verify_presence(response, pins, "bob")
    assert [d.device_id for d in presence.devices] == ["a", "b"]
    assert presence.handle == "bob" and pins.pinned("bob") == BOB.public_key
    forged = lookup(BOB, "bob", served_device(BOB, "bob", "a"), served_device(MALLORY, "bob", "b"))
    with pytest.raises(SignatureError):
        verify_presence(forged, pins, "bob")


def test_a_substituted_account_key_raises_key_changed_even_if_records_match_it() -> None:
    pins = PinStore.in_memory()
    verify_presence(lookup(BOB, "bob"), pins, "bob")
    substituted = lookup(MALLORY, "bob", served_device(MALLORY, "bob"))
    with pytest.raises(KeyChanged):
        verify_presence(substituted, pins, "bob")


def test_an_account_other_than_the_one_asked_for_is_refused() -> None:
    with pytest.raises(SignatureError, match="asked for 'bob'"):
        verify_account(account(MALLORY, "mallory"), PinStore.in_memory(), "bob")


def test_an_account_with_a_weak_key_is_refused() -> None:
    """Anyone can sign for a small-order key: the SDK trusts nothing such an account serves."""
    weak = pb.Account(handle="bob", account_key=b"\x01" + bytes(31))
    with pytest.raises(SignatureError, match=r"account key of 'bob' is a small-order point"):
        verify_account(weak, PinStore(), "bob")
    served = served_device(BOB, "bob")
    served.signed.signature = b"\x01" + bytes(63)  # R = identity, S = 0
    with pytest.raises(SignatureError, match="does not verify"):
        verify_device(served, b"\x01" + bytes(31), "bob")


def creation_signature(identity: Identity, served: pb.Account) -> bytes:
    return identity.sign(CREATE_ACCOUNT_DOMAIN, served.SerializeToString(deterministic=True))


def test_an_account_served_with_its_creation_signature_is_checked() -> None:
    bob = account(BOB, "bob")
    signature = creation_signature(BOB, bob)
    assert verify_account(bob, PinStore(), "bob", account_signature=signature).handle == "bob"
    renamed = account(BOB, "bob")
    renamed.display_name = "Mallory"  # a supernode changing what its creator signed
    with pytest.raises(SignatureError, match="creation signature"):
        verify_account(renamed, PinStore(), "bob", account_signature=signature)
    # A substituted key with a signature by that key verifies: the pin catches that one.
    swapped = account(MALLORY, "bob")
    pins = PinStore()
    verify_account(bob, pins, "bob", account_signature=signature)
    with pytest.raises(KeyChanged):
        verify_account(swapped, pins, "bob", account_signature=creation_signature(MALLORY, swapped))


def test_a_lookup_and_a_search_result_check_the_creation_signature() -> None:
    response = lookup(BOB, "bob")
    response.account_signature = creation_signature(MALLORY, response.account)
    with pytest.raises(SignatureError, match="creation signature"):
        verify_presence(response, PinStore(), "bob")
    response.account_signature = creation_signature(BOB, response.account)
    assert verify_presence(response, PinStore(), "bob").account.handle == "bob"
    response.account_signature = b""  # stored before signatures were kept: pin only
    assert verify_presence(response, PinStore(), "bob").account.handle == "bob"
    with pytest.raises(SignatureError):
        check_account_signature(account(BOB, "bob"), b"\x00" * 64)
