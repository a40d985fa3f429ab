"""What changes of an account after creation: its key rotations and its privacy settings.

Stored as one ``supernode.internal.v1.AccountState`` per account (absent until the first
change), so that in a cluster one compare-and-swap on its revision orders every change of
an account: a rotation and a privacy change, or two rotations, never both win from the same
state. Pure functions over its bytes; parsing is cached, since presence reads ask for the
state on every call.
"""

from __future__ import annotations

from functools import lru_cache

from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.internal.v1.accounts_pb2 import AccountState


@lru_cache(maxsize=65536)
def parse(raw: bytes) -> AccountState:
    """The parsed state (shared: callers must not modify it)."""
    return AccountState.FromString(raw)


@lru_cache(maxsize=65536)
def privacy_of(raw: bytes) -> pb.PrivacySettings | None:
    """The privacy settings a state holds, or None (never set: visible to everyone)."""
    state = parse(raw)
    if not state.privacy:
        return None
    return pb.PrivacySettings.FromString(state.privacy)


def current_key(raw: bytes | None, creation_key: bytes) -> bytes:
    """The key the account signs with now: the last rotation's new key, else the key it
    was created with."""
    if raw is None:
        return creation_key
    rotations = parse(raw).rotations
    if not rotations:
        return creation_key
    return pb.KeyRotation.FromString(rotations[-1].rotation).new_key


def rotations_of(raw: bytes | None) -> list[pb.SignedKeyRotation]:
    return [] if raw is None else list(parse(raw).rotations)


def position(raw: bytes | None) -> tuple[int, int]:
    """Where a state stands in its account's history: (rotations, privacy seq). Every
    accepted change raises one of them, so a mirror that sees two versions keeps the later
    one (etcd's order and a local write after a compare-and-swap can interleave)."""
    if raw is None:
        return (0, 0)
    privacy = privacy_of(raw)
    return (len(parse(raw).rotations), 0 if privacy is None else privacy.seq)


def with_privacy(raw: bytes | None, settings: bytes, signature: bytes) -> bytes:
    state = AccountState()
    if raw is not None:
        state.CopyFrom(parse(raw))
    state.privacy = settings
    state.privacy_signature = signature
    return state.SerializeToString()


def with_rotation(raw: bytes | None, rotation: pb.SignedKeyRotation) -> bytes:
    state = AccountState()
    if raw is not None:
        state.CopyFrom(parse(raw))
    state.rotations.append(rotation)
    return state.SerializeToString()
