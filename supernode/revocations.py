"""Revoked sessions: what a token check consults besides the token's own MAC and expiry.

Tokens are self-contained (an HMAC any node checks without a lookup), so revoking one means
remembering it until it would have expired anyway, and no longer: each entry carries the
time after which it can be forgotten. Two kinds:

``s/<session id hex>``  one session (Logout): value ``until_ms:u64``, the token's expiry.
``a/<handle>``          every session of an account issued at or before a moment
                        (RevokeSessions, a lost device): value ``cutoff_ms:u64 until_ms:u64``,
                        until the longest-lived token issued before the cutoff has expired.

The entries are plain named values, so one encoding serves both places they are kept: a
node alone keeps them in its store's ``meta`` family (under ``revoked/``), a cluster in etcd
under ``/revoked/`` with a lease that ends with the entry (``supernode.cluster.revocations``).
This module is pure: a token check costs two dict lookups, and nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

_U64 = struct.Struct(">Q")
_CUTOFF = struct.Struct(">QQ")
SESSION_PREFIX = "s/"
ACCOUNT_PREFIX = "a/"


@dataclass(frozen=True, slots=True)
class Revocation:
    """One entry: its name, its encoded value, and when it may be forgotten."""

    name: str
    value: bytes
    until_ms: int
    cutoff_ms: int = 0  # an account's: sessions issued at or before it are revoked


def session_revocation(session_id: bytes, until_ms: int) -> Revocation:
    return Revocation(SESSION_PREFIX + session_id.hex(), _U64.pack(until_ms), until_ms)


def account_revocation(handle: str, cutoff_ms: int, until_ms: int) -> Revocation:
    value = _CUTOFF.pack(cutoff_ms, until_ms)
    return Revocation(ACCOUNT_PREFIX + handle, value, until_ms, cutoff_ms)


class RevocationSink(Protocol):
    """Where a new revocation is made durable and known to every process that checks
    tokens (the store on a node alone, etcd in a cluster). Returns once it is durable;
    the local :class:`Revocations` already holds it then."""

    async def publish(self, revocation: Revocation) -> None: ...


class Revocations:
    """The revocations a process knows, in memory, checked on every authenticated call."""

    def __init__(self) -> None:
        self._sessions: dict[bytes, int] = {}  # session id -> until_ms
        self._accounts: dict[str, tuple[int, int]] = {}  # handle -> (cutoff_ms, until_ms)

    def __len__(self) -> int:
        return len(self._sessions) + len(self._accounts)

    def covers(self, handle: str, session_id: bytes, issued_at_ms: int) -> bool:
        """Whether the session so described has been revoked."""
        if session_id in self._sessions:
            return True
        cutoff = self._accounts.get(handle)
        return cutoff is not None and issued_at_ms <= cutoff[0]

    def apply(self, name: str, value: bytes) -> bool:
        """Add an entry by its stored form; False (and nothing added) if it is malformed,
        e.g. written by another program: a bad entry must not stop a node from starting."""
        try:
            if name.startswith(SESSION_PREFIX) and len(value) == _U64.size:
                session_id = bytes.fromhex(name[len(SESSION_PREFIX) :])
                self._sessions[session_id] = _U64.unpack(value)[0]
                return True
            if name.startswith(ACCOUNT_PREFIX) and len(value) == _CUTOFF.size:
                cutoff_ms, until_ms = _CUTOFF.unpack(value)
                handle = name[len(ACCOUNT_PREFIX) :]
                old = self._accounts.get(handle)
                if old is None or old[0] <= cutoff_ms:  # a later cutoff covers an earlier one
                    self._accounts[handle] = (cutoff_ms, until_ms)
                return True
        except ValueError:
            return False
        return False

    def remove(self, name: str) -> None:
        """Forget an entry by name (its lease ended in etcd)."""
        if name.startswith(SESSION_PREFIX):
            try:
                self._sessions.pop(bytes.fromhex(name[len(SESSION_PREFIX) :]), None)
            except ValueError:
                return
        elif name.startswith(ACCOUNT_PREFIX):
            self._accounts.pop(name[len(ACCOUNT_PREFIX) :], None)

    def update(self, changes: Mapping[str, bytes | None]) -> None:
        """Apply puts (name -> value) and removals (name -> None), e.g. a mirror batch."""
        for name, value in changes.items():
            if value is None:
                self.remove(name)
            else:
                self.apply(name, value)

    def add(self, revocation: Revocation) -> None:
        self.apply(revocation.name, revocation.value)

    def replace(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Hold exactly ``entries`` (a reload from the store, a mirror of etcd)."""
        self._sessions.clear()
        self._accounts.clear()
        for name, value in entries:
            self.apply(name, value)

    def forget_expired(self, now_ms: int) -> list[str]:
        """Drop entries whose tokens have all expired; their names, for the durable copy."""
        gone = [sid for sid, until in self._sessions.items() if until <= now_ms]
        for sid in gone:
            del self._sessions[sid]
        names = [SESSION_PREFIX + sid.hex() for sid in gone]
        handles = [h for h, (_, until) in self._accounts.items() if until <= now_ms]
        for handle in handles:
            del self._accounts[handle]
        return names + [ACCOUNT_PREFIX + handle for handle in handles]


class RevocationStore(Protocol):
    """The part of ``supernode.store.Store`` that keeps a node alone's revocations."""

    def put_revocation(self, name: str, value: bytes) -> None: ...

    def delete_revocations(self, names: Sequence[str]) -> None: ...

    def revocations(self) -> list[tuple[str, bytes]]: ...


class StoredRevocations:
    """A node alone's :class:`RevocationSink`: revocations in its store, so they survive a
    restart; its worker processes reload them when the change feed says they changed."""

    def __init__(
        self, store: RevocationStore, revocations: Revocations, clock_ms: Callable[[], int]
    ) -> None:
        self._store = store
        self._revocations = revocations
        self._clock_ms = clock_ms

    def load(self) -> None:
        self._revocations.replace(self._store.revocations())

    async def publish(self, revocation: Revocation) -> None:
        self._store.put_revocation(revocation.name, revocation.value)
        self._revocations.add(revocation)

    def sweep(self) -> int:
        """Forget the entries whose tokens have all expired; how many."""
        names = self._revocations.forget_expired(self._clock_ms())
        if names:
            self._store.delete_revocations(names)
        return len(names)
