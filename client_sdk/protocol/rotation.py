"""Key rotation statements and the chain they form; pure, shared by server and SDK.

An account is created with one key; each rotation is a ``KeyRotation`` naming the key it
replaces, signed by that key (the holder of the current key consents) and by the new key
(proof of possession), with its place in the chain (``seq``: 1, 2, ...). So the chain from
the creation key to the current key verifies link by link, and a statement applies only at
its own place: replaying it later, or applying a second rotation from the same key, fails.

The server checks a new statement against the stored chain (:func:`check_next`); a third
party (the SDK's pin store) walks the served chain (:func:`chain_keys`) and accepts the
current key only if it is reached from the key it pinned.
"""

from __future__ import annotations

from collections.abc import Sequence

from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.records import decode_exact, first_unknown_field
from client_sdk.protocol.signing import (
    KEY_ROTATION_DOMAIN,
    KEY_ROTATION_NEW_KEY_DOMAIN,
    signature_is_valid,
)
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_key, check_signature


class RotationError(ValueError):
    """A rotation statement that is not the valid next link of its account's chain."""


class StaleRotation(RotationError):
    """Well signed, but not at the chain's end: replayed, or another rotation came first."""


class ForgedRotation(RotationError):
    """A signature does not verify: the signer does not hold the key it names."""


def parse_rotation(signed: pb.SignedKeyRotation) -> pb.KeyRotation:
    """Decode a statement and check its fields' shapes (not its signatures). It is stored
    and served as sent, so neither it nor its wrapper may carry unknown fields."""
    unknown = first_unknown_field(signed, "rotation")
    if unknown is not None:
        raise InvalidField(f"{unknown}: not a field of the contract")
    rotation = pb.KeyRotation()
    decode_exact(signed.rotation, rotation, "rotation.rotation")
    check_key("rotation.old_key", rotation.old_key)
    check_key("rotation.new_key", rotation.new_key)
    check_signature("rotation.signature", signed.signature)
    check_signature("rotation.new_key_signature", signed.new_key_signature)
    return rotation


def check_next(
    handle: str, current_key: bytes, next_seq: int, signed: pb.SignedKeyRotation
) -> pb.KeyRotation:
    """The statement, when it is the valid next link after ``current_key`` (at place
    ``next_seq``) of ``handle``'s chain; ``RotationError`` (or ``InvalidField`` for a
    malformed one) otherwise."""
    rotation = parse_rotation(signed)
    if rotation.handle != handle:
        raise RotationError(f"rotation.handle: {rotation.handle!r}, expected {handle!r}")
    if rotation.seq != next_seq:
        raise StaleRotation(
            f"rotation.seq: {rotation.seq}, but the next rotation of {handle!r} is {next_seq} "
            "(replayed, or another rotation came first)"
        )
    if rotation.old_key != current_key:
        raise StaleRotation(f"rotation.old_key: not the current key of {handle!r}")
    if rotation.new_key == rotation.old_key:
        raise InvalidField("rotation.new_key: the same as old_key")
    if not signature_is_valid(
        rotation.old_key, KEY_ROTATION_DOMAIN, signed.rotation, signed.signature
    ):
        raise ForgedRotation("rotation.signature: does not verify with rotation.old_key")
    if not signature_is_valid(
        rotation.new_key, KEY_ROTATION_NEW_KEY_DOMAIN, signed.rotation, signed.new_key_signature
    ):
        raise ForgedRotation("rotation.new_key_signature: does not verify with rotation.new_key")
    return rotation


def chain_keys(
    handle: str, creation_key: bytes, chain: Sequence[pb.SignedKeyRotation]
) -> list[bytes]:
    """Every key of the account in order, creation key first, current key last, after
    checking each link; ``RotationError`` at the first bad one."""
    keys = [creation_key]
    for place, signed in enumerate(chain, start=1):
        try:
            rotation = check_next(handle, keys[-1], place, signed)
        except InvalidField as exc:
            raise RotationError(str(exc)) from exc
        keys.append(rotation.new_key)
    return keys
