"""Rotation statements, the chain they form, and the pin store following it: pure."""

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.errors import KeyChanged, SignatureError
from client_sdk.identity import Identity
from client_sdk.pins import PinStore, followed
from client_sdk.protocol.rotation import (
    ForgedRotation,
    RotationError,
    StaleRotation,
    chain_keys,
    check_next,
)
from client_sdk.protocol.signing import KEY_ROTATION_DOMAIN, KEY_ROTATION_NEW_KEY_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_rotation
from client_sdk.verify import verify_account, verify_presence
from tests.unit.factories import device_record, signed

# A few keys made once: hypothesis then draws chains over them cheaply.
KEYS = [Identity.generate() for _ in range(6)]


def chain_of(identities: list[Identity], handle: str = "alice") -> list[pb.SignedKeyRotation]:
    return [
        sign_rotation(old, new, handle, place, issued_at_ms=1)
        for place, (old, new) in enumerate(itertools.pairwise(identities), 1)
    ]


def test_a_statement_is_the_next_link_only_at_its_place_and_from_the_current_key() -> None:
    a, b, c = KEYS[:3]
    first = sign_rotation(a, b, "alice", 1)
    assert check_next("alice", a.public_key, 1, first).new_key == b.public_key
    with pytest.raises(StaleRotation, match="seq: 1, but the next rotation of 'alice' is 2"):
        check_next("alice", b.public_key, 2, first)  # replayed after it was applied
    with pytest.raises(StaleRotation, match="old_key: not the current key"):
        check_next("alice", c.public_key, 1, first)  # another rotation came first
    with pytest.raises(RotationError, match="handle: 'alice', expected 'bob'"):
        check_next("bob", a.public_key, 1, first)


def test_both_signatures_are_needed_and_neither_stands_in_for_the_other() -> None:
    a, b, stranger = KEYS[:3]
    statement = sign_rotation(a, b, "alice", 1)
    swapped = pb.SignedKeyRotation(
        rotation=statement.rotation,
        signature=statement.new_key_signature,
        new_key_signature=statement.signature,
    )
    with pytest.raises(ForgedRotation, match=r"rotation\.signature"):
        check_next("alice", a.public_key, 1, swapped)
    no_possession = pb.SignedKeyRotation(
        rotation=statement.rotation,
        signature=statement.signature,
        new_key_signature=stranger.sign(KEY_ROTATION_NEW_KEY_DOMAIN, statement.rotation),
    )
    with pytest.raises(ForgedRotation, match="new_key_signature"):
        check_next("alice", a.public_key, 1, no_possession)
    other_purpose = pb.SignedKeyRotation(
        rotation=statement.rotation,
        signature=a.sign(b"supernode.v1.DeviceRecord", statement.rotation),
        new_key_signature=statement.new_key_signature,
    )
    with pytest.raises(ForgedRotation):
        check_next("alice", a.public_key, 1, other_purpose)
    assert KEY_ROTATION_DOMAIN != KEY_ROTATION_NEW_KEY_DOMAIN


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(len(KEYS))), st.integers(0, 5))
def test_a_chain_verifies_to_its_last_key(order: list[int], length: int) -> None:
    identities = [KEYS[i] for i in order[: length + 1]]
    keys = chain_keys("alice", identities[0].public_key, chain_of(identities))
    assert keys == [i.public_key for i in identities]


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(len(KEYS))), st.integers(1, 5), st.data())
def test_a_chain_with_any_link_removed_or_swapped_fails(
    order: list[int], length: int, data: st.DataObject
) -> None:
    identities = [KEYS[i] for i in order[: length + 1]]
    chain = chain_of(identities)
    broken = list(chain)
    index = data.draw(st.integers(0, len(chain) - 1))
    if index < len(chain) - 1 and data.draw(st.booleans()):
        del broken[index]  # a link missing: the next names a key never reached (a chain
        # cut at its end is a valid shorter chain: the pin store refuses that rollback)
    else:
        broken[index] = sign_rotation(KEYS[order[-1]], identities[index + 1], "alice", index + 1)
    if broken != chain:
        with pytest.raises(RotationError):
            chain_keys("alice", identities[0].public_key, broken)


@given(st.lists(st.binary(min_size=1, max_size=2), min_size=1, max_size=5, unique=True),
       st.none() | st.binary(min_size=1, max_size=2))  # fmt: skip
def test_the_pin_follows_a_chain_through_it_and_nothing_else(
    chain: list[bytes], pinned: bytes | None
) -> None:
    if pinned is None or pinned in chain:
        assert followed("alice", pinned, chain) == chain[-1]
    else:
        with pytest.raises(KeyChanged):
            followed("alice", pinned, chain)


def test_pins_follow_rotations_in_a_file(tmp_path: Path) -> None:
    a, b, c = KEYS[:3]
    account = pb.Account(handle="alice", account_key=a.public_key)
    pins = PinStore.file(tmp_path / "pins.json")
    assert verify_account(account, pins, "alice").account_key == a.public_key
    rotated = verify_account(account, pins, "alice", chain_of([a, b, c]))
    assert rotated.account_key == c.public_key
    assert PinStore.file(tmp_path / "pins.json").pinned("alice") == c.public_key
    # A rollback (the chain cut before the pinned key) is a key change.
    with pytest.raises(KeyChanged):
        verify_account(account, pins, "alice", chain_of([a, b]))
    # A chain forged from the pinned key by someone without it does not verify.
    forged = [*chain_of([a, b, c]), sign_rotation(KEYS[4], KEYS[5], "alice", 3)]
    with pytest.raises(SignatureError, match="key rotations served"):
        verify_account(account, pins, "alice", forged)
    # An account key replaced outright (no chain) is a key change too.
    with pytest.raises(KeyChanged):
        verify_account(pb.Account(handle="alice", account_key=KEYS[5].public_key), pins, "alice")


def test_records_of_an_earlier_key_are_dropped_and_forged_ones_refused() -> None:
    a, b = KEYS[:2]
    old = pb.Device(signed=signed(a, device_record(device_id="old")))
    new = pb.Device(signed=signed(b, device_record(device_id="new")))
    forged = pb.Device(signed=signed(KEYS[5], device_record(device_id="forged")))
    account = pb.Account(handle="alice", account_key=a.public_key)
    response = pb.LookupResponse(account=account, devices=[old, new], rotations=chain_of([a, b]))
    presence = verify_presence(response, PinStore.in_memory(), "alice")
    assert [d.device_id for d in presence.devices] == ["new"]
    response.devices.append(forged)
    with pytest.raises(SignatureError):
        verify_presence(response, PinStore.in_memory(), "alice")
