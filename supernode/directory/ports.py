"""The directory's ports: what its rules need from storage and from the account registry.

The domain owns these interfaces and every backend implements them: the single node's
RocksDB store (``supernode.store.Store``) and the cluster's etcd-backed registry alike, so
neither is special. Presence storage is a replica's own local store: synchronous, one
RocksDB call on the event-loop thread, so a read-modify-write never interleaves with another.
What the cluster awaits (claiming a handle cluster-wide in etcd) is ``async``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from client_sdk.protocol.records import Version
from supernode.directory.account_record import AccountRecord


@dataclass(frozen=True, slots=True)
class DeviceSlot:
    """What a store remembers of one device: its lease end, its seq, and the serialized
    ``Device`` served for it (empty for a tombstone)."""

    expires_at_ms: int
    seq: int
    device: bytes

    @property
    def live(self) -> bool:
        return bool(self.device)

    @property
    def version(self) -> Version:
        return Version(self.seq, not self.live, self.expires_at_ms)


@dataclass(frozen=True, slots=True)
class ExpiryEntry:
    expires_at_ms: int
    handle: str
    device_id: str


class PresenceStore(Protocol):
    """A replica's device records, tombstones, expiry index and lookup views."""

    def device_slot(self, handle: str, device_id: str) -> DeviceSlot | None: ...

    def put_device(
        self,
        handle: str,
        device_id: str,
        *,
        seq: int,
        expires_at_ms: int,
        device: bytes,
        previous: DeviceSlot | None,
    ) -> None: ...

    def delete_device(self, handle: str, device_id: str, previous: DeviceSlot) -> None: ...

    def delete_expiry_entry(self, entry: ExpiryEntry) -> None: ...

    def live_devices(self, handle: str, now_ms: int) -> list[bytes]: ...

    def device_versions(self, handle: str) -> list[tuple[str, int, int, bytes]]:
        """(device id, expires_at_ms, seq, serialized Device or b"" for a tombstone)."""
        ...

    def fresh_lookup_responses(self, handles: list[str], now_ms: int) -> list[bytes | None]: ...

    def device_count(self, handle: str) -> int: ...

    def count_live_devices(self, now_ms: int) -> int: ...

    def due_expiries(self, now_ms: int, limit: int) -> list[ExpiryEntry]: ...


class AccountRegistry(Protocol):
    """Where accounts live: handle -> the account as created (``AccountRecord``).

    Reads are local (a cluster node reads its mirror); claiming a handle may wait on the
    cluster (a create-if-absent transaction in etcd), so it is a coroutine.
    """

    def get_account(self, handle: str) -> AccountRecord | None: ...

    def get_accounts(self, handles: list[str]) -> list[AccountRecord | None]: ...

    async def claim_account(
        self, handle: str, account: AccountRecord, search_terms: Sequence[str] = ()
    ) -> bool: ...

    def search_handles(self, term_prefix: str, max_entries: int) -> list[str]: ...

    def account_count(self) -> int: ...

    def get_account_state(self, handle: str) -> bytes | None:
        """The serialized ``AccountState`` (rotations, privacy) or None: local, the hot path."""
        ...

    def changed_accounts(self, handles: Iterable[str]) -> list[str]:
        """Which of ``handles`` have a state at all (a set lookup each: the hot path of a
        LookupMany, where nearly every account never changed)."""
        ...

    async def update_account_state(
        self, handle: str, update: Callable[[bytes | None], bytes]
    ) -> bytes:
        """Replace the handle's state with ``update(current)``, atomically: in a cluster a
        compare-and-swap on the state's revision in etcd, ``update`` called again with the
        newer state when another write came first (so it must be pure, and raise to give
        up). Nothing is written when ``update`` returns the state unchanged (a retried
        request). Returns the state stored."""
        ...


class AccountKeys(Protocol):
    """What presence needs of accounts: a handle's key and its stored account."""

    def account_key(self, handle: str) -> bytes: ...

    def find(self, handle: str) -> AccountRecord | None: ...

    def rotations(self, handle: str) -> list[bytes]: ...
