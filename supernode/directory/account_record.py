"""How an account is stored: the Account exactly as its creator signed it, and the
CreateAccount signature, in one value (``supernode.internal.v1.StoredAccount`` behind a
format byte). The same value is the store's (accounts family) and, in a cluster, etcd's
(``/accounts/<handle>``), so a mirror copies it as it is.

Accounts stored before signatures were kept are bare serialized Accounts: they still load,
and are served without a signature (only trust on first use then vouches for them). A
serialized Account never starts with the format byte 0x01 (field number 0 is invalid), so
the two cannot be confused.
"""

from __future__ import annotations

from dataclasses import dataclass

from supernode.internal.v1 import accounts_pb2

_FORMAT_1 = b"\x01"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A stored account. ``account``: the serialized ``supernode.v1.Account`` as signed;
    ``signature``: its CreateAccount signature, b"" for an account stored without one."""

    account: bytes
    signature: bytes = b""

    def encode(self) -> bytes:
        stored = accounts_pb2.StoredAccount(account=self.account, signature=self.signature)
        return _FORMAT_1 + stored.SerializeToString()

    @classmethod
    def decode(cls, value: bytes) -> AccountRecord:
        if not value.startswith(_FORMAT_1):
            return cls(value)  # stored before signatures were kept
        stored = accounts_pb2.StoredAccount.FromString(value[1:])
        return cls(stored.account, stored.signature)
