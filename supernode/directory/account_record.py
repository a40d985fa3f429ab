"""How an account is stored: the Account exactly as its creator signed it, followed by the
CreateAccount signature as field 15 (reserved in ``supernode.v1.Account`` for this, so no
request or answer carries it). The same value is the store's (accounts family) and, in a
cluster, etcd's (``/accounts/<handle>``), so a mirror copies it as it is.

Why a trailing field and not a wrapper: every reader that parses the value as an Account
still can. A node not yet upgraded (a rolling upgrade) mirrors an account created through
an upgraded one (it skips the unknown field), and accounts stored before signatures were
kept, bare Accounts, load as accounts without a signature (served without one: only trust
on first use vouches for them). The signature is told apart by parsing, not by the bytes
alone: a stored Account never has unknown fields (CreateAccount refuses them), so an
unknown field 15 of 64 bytes is the signature and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError

from client_sdk.protocol import wire
from client_sdk.protocol.v1 import directory_pb2 as pb

SIGNATURE_FIELD = 15
_SIGNATURE_BYTES = 64
_TRAILER_BYTES = len(wire.field(SIGNATURE_FIELD, bytes(_SIGNATURE_BYTES)))
_TRAILER_HEAD = wire.field(SIGNATURE_FIELD, bytes(_SIGNATURE_BYTES))[:-_SIGNATURE_BYTES]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A stored account. ``account``: the serialized ``supernode.v1.Account`` as signed;
    ``signature``: its CreateAccount signature, b"" for an account stored without one."""

    account: bytes
    signature: bytes = b""

    def encode(self) -> bytes:
        if not self.signature:
            return self.account
        return self.account + wire.field(SIGNATURE_FIELD, self.signature)

    @classmethod
    def decode(cls, value: bytes) -> AccountRecord:
        head = value[-_TRAILER_BYTES : -_TRAILER_BYTES + len(_TRAILER_HEAD)]
        if len(value) <= _TRAILER_BYTES or head != _TRAILER_HEAD or not _has_signature(value):
            return cls(value)  # stored before signatures were kept
        return cls(value[:-_TRAILER_BYTES], value[-_SIGNATURE_BYTES:])


def _has_signature(value: bytes) -> bool:
    """Whether the field the trailing bytes look like is really an unknown field 15 (and
    not, say, the end of a display name that happens to hold the same bytes)."""
    try:
        parsed = pb.Account.FromString(value)
    except DecodeError:
        return False
    found = unknown_fields.UnknownFieldSet(parsed)
    return len(found) == 1 and found[0].field_number == SIGNATURE_FIELD
