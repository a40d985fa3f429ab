"""Device presence: register and renew signed records, unregister, look up, sweep leases.

Storage sits behind :class:`PresenceStore` (``supernode.store.Store`` satisfies it) so the
cluster can later put replication in between. Everything here runs on the server's one event
loop thread with no ``await`` between reading a slot and writing it, so each change is a
race-free read-modify-write.
"""

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from client_sdk.protocol import wire
from client_sdk.protocol.records import parse_device_record
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_device_id, check_handle, check_signature_length
from supernode.directory import lease
from supernode.directory.accounts import Accounts
from supernode.directory.validation import Limits
from supernode.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from supernode.store import DeviceSlot, ExpiryEntry


class PresenceStore(Protocol):
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

    def fresh_lookup_responses(self, handles: list[str], now_ms: int) -> list[bytes | None]: ...

    def device_count(self, handle: str) -> int: ...

    def count_live_devices(self, now_ms: int) -> int: ...

    def due_expiries(self, now_ms: int, limit: int) -> list[ExpiryEntry]: ...


class Change(enum.Enum):
    """What happened to a device, as observers (metrics now, watchers later) see it."""

    ONLINE = "online"
    UPDATED = "updated"
    UNREGISTERED = "unregistered"
    EXPIRED = "expired"


class PresenceObserver(Protocol):
    """Told of every committed change; ``device`` is the serialized ``Device`` when live."""

    def device_changed(
        self, handle: str, device_id: str, change: Change, device: bytes | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Registration:
    expires_at_ms: int
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class SweepResult:
    expired: int
    purged: int


class Presence:
    """The presence rules over a :class:`PresenceStore`."""

    def __init__(
        self,
        store: PresenceStore,
        accounts: Accounts,
        *,
        policy: lease.LeasePolicy,
        limits: Limits,
        clock_ms: Callable[[], int],
        node_name: str,
        observers: Sequence[PresenceObserver] = (),
        count_online: bool = True,
    ) -> None:
        """``count_online``: scan the store once for the devices-online gauge (a worker
        process, which only reads, skips it)."""
        self._store = store
        self._accounts = accounts
        self._policy = policy
        self._limits = limits
        self._clock_ms = clock_ms
        self._node_name = node_name
        self._observers = list(observers)
        self.online = store.count_live_devices(clock_ms()) if count_online else 0

    def _notify(
        self, handle: str, device_id: str, change: Change, device: bytes | None = None
    ) -> None:
        for observer in self._observers:
            observer.device_changed(handle, device_id, change, device)

    def register(self, session_handle: str, signed: pb.SignedDeviceRecord) -> Registration:
        """Store a new or renewed record for the session's own account.

        Cheap checks run before the signature check, so garbage costs little CPU.
        """
        record = parse_device_record(signed.record, self._limits)
        check_signature_length("signed.signature", signed.signature)
        if record.handle != session_handle:
            raise PermissionDenied(
                f"record.handle: {record.handle!r}, but this session belongs to {session_handle!r}"
            )
        now_ms = self._clock_ms()
        lease.check_issued_at(record.issued_at_ms, now_ms, self._policy)
        slot = self._store.device_slot(record.handle, record.device_id)
        if slot is not None and record.seq <= slot.seq:  # the replay rule, stricter than merge
            raise FailedPrecondition(
                f"record.seq: {record.seq} is not greater than the stored {slot.seq} "
                "(a replayed or out-of-order record)"
            )
        was_live = slot is not None and slot.live
        if (
            not was_live
            and self._store.device_count(record.handle) >= self._limits.max_devices_per_handle
        ):
            raise ResourceExhausted(
                f"record.device_id: {record.handle!r} already has "
                f"{self._limits.max_devices_per_handle} devices, the most allowed"
            )
        account_key = self._accounts.account_key(record.handle)
        if not signature_is_valid(
            account_key, DEVICE_RECORD_DOMAIN, signed.record, signed.signature
        ):
            raise PermissionDenied(
                f"signed.signature: does not verify with the account key of {record.handle!r}"
            )
        ttl = lease.granted_ttl_seconds(record.ttl_seconds, self._policy)
        expires_at_ms = lease.lease_expiry_ms(now_ms, ttl)
        device = pb.Device(
            signed=signed, expires_at_ms=expires_at_ms, attached_supernode=self._node_name
        ).SerializeToString()
        self._store.put_device(
            record.handle,
            record.device_id,
            seq=record.seq,
            expires_at_ms=expires_at_ms,
            device=device,
            previous=slot,
        )
        if not was_live:
            self.online += 1
        self._notify(
            record.handle,
            record.device_id,
            Change.UPDATED if was_live else Change.ONLINE,
            device,
        )
        return Registration(expires_at_ms, ttl)

    def unregister(self, session_handle: str, device_id: str) -> bool:
        """Replace the device's record by a tombstone that keeps its seq (blocks replays)."""
        check_device_id("device_id", device_id)
        slot = self._store.device_slot(session_handle, device_id)
        if slot is None or not slot.live:
            return False
        self._bury(session_handle, device_id, slot)
        self._notify(session_handle, device_id, Change.UNREGISTERED)
        return slot.expires_at_ms > self._clock_ms()

    def _bury(self, handle: str, device_id: str, slot: DeviceSlot) -> None:
        self._store.put_device(
            handle,
            device_id,
            seq=slot.seq,
            expires_at_ms=self._clock_ms() + self._policy.tombstone_retention_ms,
            device=b"",
            previous=slot,
        )
        self.online -= 1

    def lookup(self, handle: str) -> bytes:
        """A serialized ``LookupResponse``: the account and its live devices, as stored.

        The handle is validated only when no account has it: a stored handle was valid
        when created, so the hot path skips the pattern match.
        """
        response = self._store.fresh_lookup_responses([handle], self._clock_ms())[0]
        if response is None:
            response = self._slow_lookup(handle)
        if response is None:
            check_handle("handle", handle)
            raise NotFound(f"handle: no account {handle!r}")
        return response

    def lookup_many(self, handles: Sequence[str]) -> bytes:
        """A serialized ``LookupManyResponse``; unknown handles go to ``not_found``."""
        if len(handles) > self._limits.max_lookup_many:
            raise ResourceExhausted(
                f"handles: {len(handles)} given, at most {self._limits.max_lookup_many} per call"
            )
        wanted = list(handles)
        results: list[bytes] = []
        not_found: list[str] = []
        fresh = self._store.fresh_lookup_responses(wanted, self._clock_ms())
        for index, (handle, response) in enumerate(zip(wanted, fresh, strict=True)):
            if response is None:
                response = self._slow_lookup(handle)
            if response is None:
                check_handle(f"handles[{index}]", handle)
                not_found.append(handle)
            else:
                results.append(response)
        return wire.lookup_many_response(results, not_found)

    def _slow_lookup(self, handle: str) -> bytes | None:
        """Build the answer from the account and a devices scan that filters ended leases
        (a view is stale until the sweeper buries them, or absent for unknown handles)."""
        account = self._accounts.find(handle)
        if account is None:
            return None
        return wire.lookup_response(account, self._store.live_devices(handle, self._clock_ms()))

    def sweep(self, limit: int = 10_000) -> SweepResult:
        """Turn ended leases into tombstones and drop tombstones past their retention."""
        now_ms = self._clock_ms()
        expired = purged = 0
        for entry in self._store.due_expiries(now_ms, limit):
            slot = self._store.device_slot(entry.handle, entry.device_id)
            if slot is None or slot.expires_at_ms != entry.expires_at_ms:
                self._store.delete_expiry_entry(entry)  # stale: cannot happen, heals if it does
            elif slot.live:
                self._bury(entry.handle, entry.device_id, slot)
                expired += 1
                self._notify(entry.handle, entry.device_id, Change.EXPIRED)
            else:
                self._store.delete_device(entry.handle, entry.device_id, slot)
                purged += 1
        return SweepResult(expired, purged)
