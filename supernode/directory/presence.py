"""Device presence, split the way replication needs it: admission apart from apply.

* :class:`Admission` runs once per call, on the node that took it (the coordinator): it
  parses the signed record, checks the session, the clock skew and the signature, computes
  the lease, and produces a :class:`DeviceWrite`, a value that can travel to other nodes.
* :class:`Replica` runs wherever the handle's records are stored: it applies writes by the
  merge rule (``client_sdk.protocol.records.supersedes``), answers lookups and expires its
  own leases, and returns what changed as :class:`DeviceChanged` values instead of calling
  anyone (the aioquic way: state in, events out, the caller dispatches them).
* :class:`Presence` composes the two for a node that holds every handle itself, and tells
  its observers (the watch hub, metrics) about each change.

Everything here runs on the server's one event-loop thread with no ``await`` between
reading a slot and writing it, so each change is a race-free read-modify-write.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError

from client_sdk.protocol import wire
from client_sdk.protocol.records import (
    Version,
    first_unknown_field,
    parse_device_record,
    supersedes,
)
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_device_id, check_handle, check_signature
from supernode.directory import lease
from supernode.directory.budget import ResponseBudget
from supernode.directory.ports import AccountKeys, PresenceStore
from supernode.directory.validation import Limits
from supernode.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
)

# Handles read from the store per multi-get in a LookupMany: small enough that a chunk of
# the largest answers (16 devices at the record limits, ~40 KB each) stays a few MB.
LOOKUP_CHUNK = 16


def first_positions(handles: Sequence[str]) -> dict[str, int]:
    """Each handle once, in request order, with the index it was first asked at (what an
    error about it names)."""
    first: dict[str, int] = {}
    for index, handle in enumerate(handles):
        first.setdefault(handle, index)
    return first


class Change(enum.Enum):
    """What happened to a device, as observers (watchers, metrics) see it."""

    ONLINE = "online"
    UPDATED = "updated"
    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    # A new version of a live device with nothing a watcher sees changed (a lease renewal):
    # lookups serve it, caches take it, but it is no watch event (``same_to_watchers``).
    RENEWED = "renewed"


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    """One committed change; ``device`` is the serialized ``Device`` when it is live."""

    handle: str
    device_id: str
    change: Change
    device: bytes | None = None
    # The seq of the version the change is about: with replicas, the same change is
    # committed on each of them, and watchers are told once per (handle, device, seq).
    seq: int = 0


def extended_lease(
    current: DeviceWrite | None, seq: int, now_ms: int, policy: lease.LeasePolicy
) -> Admitted:
    """The version of ``current`` whose lease runs a full TTL from ``now_ms``: the same
    signed record (same seq, no new signature to verify), the same attachment, a later end.

    A keepalive: a device whose record has not changed extends its lease without signing
    anew. The merge rule orders versions of one seq by lease end, so this version wins over
    ``current`` on every replica, loses to a tombstone of the same seq (an unregister) and
    to any newer seq. Only the device's live, unexpired version at ``seq`` is extended: an
    ended lease is not revived, a superseded seq is not extended, an unknown or unregistered
    device is not registered: each ``FAILED_PRECONDITION`` (with its reason), register anew.
    """
    if current is None or current.tombstone:
        raise FailedPrecondition(
            "device_id: no such device registered; register it", Reason.DEVICE_NOT_REGISTERED
        )
    if current.seq != seq:
        raise FailedPrecondition(
            f"seq: {seq}, but the device's current record has seq {current.seq}; "
            "register the current record",
            Reason.STALE_SEQ,
        )
    if current.expires_at_ms <= now_ms:
        raise FailedPrecondition(
            "device_id: its lease has ended; register it anew", Reason.LEASE_ENDED
        )
    device = pb.Device.FromString(current.device)
    record = pb.DeviceRecord.FromString(device.signed.record)
    ttl = lease.granted_ttl_seconds(record.ttl_seconds, policy)
    device.expires_at_ms = max(current.expires_at_ms, lease.lease_expiry_ms(now_ms, ttl))
    write = DeviceWrite(
        current.handle, current.device_id, seq, device.expires_at_ms, device.SerializeToString()
    )
    return Admitted(write, ttl)


def same_to_watchers(before: bytes, after: bytes) -> bool:
    """Whether two serialized ``Device`` versions show a watcher the same device: the same
    endpoints, transport key, status, capabilities and attached node. What differs between
    a renewal and its predecessor (seq, issued_at, TTL, lease end, signature) is not told
    to watchers: at a million devices renewed every 150 s that would be ~6.7k watch events a
    second, flooding every watcher of a handle and the watch history with nothing new.

    Anything that does not parse as a signed record counts as changed.
    """
    old, new = pb.Device(), pb.Device()
    old_record, new_record = pb.DeviceRecord(), pb.DeviceRecord()
    try:
        old.ParseFromString(before)
        new.ParseFromString(after)
        old_record.ParseFromString(old.signed.record)
        new_record.ParseFromString(new.signed.record)
    except DecodeError:
        return False
    return (
        bool(old.signed.record and new.signed.record)
        and old.attached_supernode == new.attached_supernode
        and old_record.endpoints == new_record.endpoints
        and old_record.transport_key == new_record.transport_key
        and old_record.status == new_record.status
        and old_record.capabilities == new_record.capabilities
    )


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """An admitted version of one device: what every replica of its handle applies.

    ``device`` is the serialized ``Device`` exactly as lookups serve it; empty for a
    tombstone, which keeps the seq of the record it removed until ``expires_at_ms``.
    """

    handle: str
    device_id: str
    seq: int
    expires_at_ms: int
    device: bytes

    @property
    def tombstone(self) -> bool:
        return not self.device

    @property
    def version(self) -> Version:
        return Version(self.seq, self.tombstone, self.expires_at_ms)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A registration that passed the cheap checks; its signature is not verified yet."""

    record: pb.DeviceRecord
    signed: pb.SignedDeviceRecord


@dataclass(frozen=True, slots=True)
class Admitted:
    write: DeviceWrite
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Removal:
    """The tombstone an unregister writes, and whether the removed lease was still running."""

    write: DeviceWrite
    lease_was_running: bool


def burial_seq(newest: Version | None, at_least_seq: int) -> int | None:
    """The seq an unregister's tombstone carries, given the newest stored version of the
    device (tombstone or live) and the highest seq the client says it used: the higher of
    the two, so a registration the client sent but never saw answered (on one replica
    only, or still in flight) cannot win over the tombstone later. None when nothing is to
    be written: no live record and no seq above what is already buried."""
    if newest is None:
        return at_least_seq or None
    if not newest.tombstone:
        return max(newest.seq, at_least_seq)
    return at_least_seq if at_least_seq > newest.seq else None


@dataclass(frozen=True, slots=True)
class Registration:
    expires_at_ms: int
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Swept:
    expired: int
    purged: int
    changes: list[DeviceChanged]


class PresenceObserver(Protocol):
    """Told of every committed change, in commit order."""

    def device_changed(self, event: DeviceChanged) -> None: ...


class Admission:
    """The checks a registration passes once, wherever it arrives, before anything is stored."""

    def __init__(
        self,
        accounts: AccountKeys,
        *,
        policy: lease.LeasePolicy,
        limits: Limits,
        clock_ms: Callable[[], int],
        node_name: str,
    ) -> None:
        """``node_name``: stamped into every admitted record as the node the device is
        attached to, where rendezvous offers for it are delivered."""
        self._accounts = accounts
        self._policy = policy
        self._limits = limits
        self.clock_ms = clock_ms
        self.node_name = node_name

    def parse(self, session_handle: str, signed: pb.SignedDeviceRecord) -> Candidate:
        """The cheap checks, which run before the signature so garbage costs little CPU."""
        # The wrapper is stored and served as sent (inside ``Device``): nothing may ride in it.
        unknown = first_unknown_field(signed, "signed")
        if unknown is not None:
            raise InvalidArgument(
                f"{unknown}: not a field of supernode.v1.SignedDeviceRecord",
                reason=Reason.INVALID_FIELD,
            )
        record = parse_device_record(signed.record, self._limits)
        check_signature("signed.signature", signed.signature)
        if record.handle != session_handle:
            raise PermissionDenied(
                f"record.handle: {record.handle!r}, but this session belongs to {session_handle!r}",
                reason=Reason.NOT_OWNER,
            )
        lease.check_issued_at(record.issued_at_ms, self.clock_ms(), self._policy)
        return Candidate(record, signed)

    def admit(self, candidate: Candidate) -> Admitted:
        """Verify the signature with the account's key and stamp the lease."""
        record, signed = candidate.record, candidate.signed
        account_key = self._accounts.account_key(record.handle)
        if not signature_is_valid(
            account_key, DEVICE_RECORD_DOMAIN, signed.record, signed.signature
        ):
            raise PermissionDenied(
                f"signed.signature: does not verify with the account key of {record.handle!r}",
                reason=Reason.SIGNATURE_INVALID,
            )
        ttl = lease.granted_ttl_seconds(record.ttl_seconds, self._policy)
        expires_at_ms = lease.lease_expiry_ms(self.clock_ms(), ttl)
        device = pb.Device(
            signed=signed, expires_at_ms=expires_at_ms, attached_supernode=self.node_name
        ).SerializeToString()
        return Admitted(
            DeviceWrite(record.handle, record.device_id, record.seq, expires_at_ms, device), ttl
        )


class Replica:
    """One node's copy of presence: apply writes, answer lookups, expire its own leases."""

    def __init__(
        self,
        store: PresenceStore,
        accounts: AccountKeys,
        *,
        policy: lease.LeasePolicy,
        limits: Limits,
        clock_ms: Callable[[], int],
        count_online: bool = True,
    ) -> None:
        """``count_online``: scan the store once for the devices-online gauge (a worker
        process, which only reads, skips it)."""
        self._store = store
        self._accounts = accounts
        self._policy = policy
        self._limits = limits
        self._clock_ms = clock_ms
        self.online = store.count_live_devices(clock_ms()) if count_online else 0

    # ------------------------------------------------------------------ writes

    def check_fresh(self, handle: str, device_id: str, seq: int) -> None:
        """What a new registration must pass against the stored state: the replay rule
        (strictly higher seq than anything stored, stricter than merge) and the device cap."""
        slot = self._store.device_slot(handle, device_id)
        if slot is not None and seq <= slot.seq:
            raise FailedPrecondition(
                f"record.seq: {seq} is not greater than the stored {slot.seq} "
                "(a replayed or out-of-order record)",
                reason=Reason.STALE_SEQ,
            )
        if (slot is None or not slot.live) and self._store.device_count(
            handle
        ) >= self._limits.max_devices_per_handle:
            raise ResourceExhausted(
                f"record.device_id: {handle!r} already has "
                f"{self._limits.max_devices_per_handle} devices, the most allowed",
                reason=Reason.DEVICE_LIMIT,
            )

    def register(self, write: DeviceWrite) -> DeviceChanged:
        """Apply a client's new registration: fresh (see :meth:`check_fresh`), so it wins."""
        self.check_fresh(write.handle, write.device_id, write.seq)
        change = self.apply(write)
        assert change is not None, "a fresh live write always supersedes"
        return change

    def apply(self, write: DeviceWrite) -> DeviceChanged | None:
        """Merge ``write`` into the store; the change it made, or None when the store already
        held it or a newer version (idempotent: applying twice changes nothing)."""
        slot = self._store.device_slot(write.handle, write.device_id)
        if not supersedes(write.version, None if slot is None else slot.version):
            return None
        was_live = slot is not None and slot.live
        self._store.put_device(
            write.handle,
            write.device_id,
            seq=write.seq,
            expires_at_ms=write.expires_at_ms,
            device=write.device,
            previous=slot,
        )
        if not write.tombstone:
            if slot is None or not slot.live:
                self.online += 1
                change = Change.ONLINE
            elif same_to_watchers(slot.device, write.device):
                change = Change.RENEWED
            else:
                change = Change.UPDATED
            return DeviceChanged(write.handle, write.device_id, change, write.device, write.seq)
        if was_live:
            self.online -= 1
            return DeviceChanged(write.handle, write.device_id, Change.UNREGISTERED, seq=write.seq)
        return None

    def tombstone(self, handle: str, device_id: str, seq: int) -> DeviceWrite:
        """A tombstone at ``seq`` (it wins the tie against a record of the same seq), kept
        for the retention from now."""
        expires_at_ms = self._clock_ms() + self._policy.tombstone_retention_ms
        return DeviceWrite(handle, device_id, seq, expires_at_ms, b"")

    @property
    def policy(self) -> lease.LeasePolicy:
        return self._policy

    def current(self, handle: str, device_id: str) -> DeviceWrite | None:
        """The version this replica holds of one device (a tombstone included), or None."""
        slot = self._store.device_slot(handle, device_id)
        if slot is None:
            return None
        return DeviceWrite(handle, device_id, slot.seq, slot.expires_at_ms, slot.device)

    def extension(self, handle: str, device_id: str, seq: int) -> Admitted:
        """The keepalive of ``handle``'s device at ``seq``, from the version held here."""
        check_device_id("device_id", device_id)
        return extended_lease(self.current(handle, device_id), seq, self._clock_ms(), self._policy)

    def removal(self, handle: str, device_id: str, at_least_seq: int = 0) -> Removal | None:
        """The tombstone that unregisters the device: at the stored seq (the tombstone wins
        the tie) or at ``at_least_seq`` when the client has sent a higher one (see
        :func:`burial_seq`); None when there is nothing new to bury."""
        check_device_id("device_id", device_id)
        slot = self._store.device_slot(handle, device_id)
        seq = burial_seq(None if slot is None else slot.version, at_least_seq)
        if seq is None:
            return None
        write = self.tombstone(handle, device_id, seq)
        running = slot is not None and slot.live and slot.expires_at_ms > self._clock_ms()
        return Removal(write, running)

    # ------------------------------------------------------------------ reads

    def is_live(self, handle: str, device_id: str, now_ms: int) -> bool:
        slot = self._store.device_slot(handle, device_id)
        return slot is not None and slot.live and slot.expires_at_ms > now_ms

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
            raise NotFound(f"handle: no account {handle!r}", reason=Reason.ACCOUNT_NOT_FOUND)
        return response

    def lookup_many(self, handles: Sequence[str]) -> bytes:
        """A serialized ``LookupManyResponse``; unknown handles go to ``not_found``. Each
        handle is answered once, however often it was asked for: the answer is bounded by
        the distinct handles, not by what a caller repeats (1,000 copies of one handle
        once made a 14 KB request return 52.9 MB). And it is bounded in bytes: handles past
        ``max_response_bytes`` go to ``unanswered``, read from the store a chunk at a time,
        so building the answer never holds much more than the limit."""
        self.check_batch(handles)
        asked = first_positions(handles)
        wanted = list(asked)
        budget = ResponseBudget(self._limits.max_response_bytes)
        results: list[bytes] = []
        not_found: list[str] = []
        now_ms = self._clock_ms()
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            fresh = self._store.fresh_lookup_responses(chunk, now_ms)
            for offset, (handle, response) in enumerate(zip(chunk, fresh, strict=True)):
                if response is None:
                    response = self._slow_lookup(handle)
                if response is None:
                    check_handle(f"handles[{asked[handle]}]", handle)
                    if budget.take(len(handle)):
                        not_found.append(handle)
                        continue
                elif budget.take(len(response)):
                    results.append(response)
                    continue
                rest = wanted[start + offset :]
                for later in rest:
                    check_handle(f"handles[{asked[later]}]", later)
                return wire.lookup_many_response(results, not_found, rest)
        return wire.lookup_many_response(results, not_found)

    def versions(self, handle: str) -> list[DeviceWrite]:
        """Every stored version of a handle's devices, tombstones included (read repair)."""
        return [
            DeviceWrite(handle, device_id, seq, expires_at_ms, device)
            for device_id, expires_at_ms, seq, device in self._store.device_versions(handle)
        ]

    @property
    def max_response_bytes(self) -> int:
        """The most one answer may hold (``Limits.max_response_bytes``)."""
        return self._limits.max_response_bytes

    def check_batch(self, handles: Sequence[str]) -> None:
        if len(handles) > self._limits.max_lookup_many:
            raise ResourceExhausted(
                f"handles: {len(handles)} given, at most {self._limits.max_lookup_many} per call",
                reason=Reason.REQUEST_TOO_LARGE,
            )

    def _slow_lookup(self, handle: str) -> bytes | None:
        """Build the answer from the account and a devices scan that filters ended leases
        (a view is stale until the sweeper buries them, or absent for unknown handles)."""
        account = self._accounts.find(handle)
        if account is None:
            return None
        return wire.lookup_response(
            account.account,
            self._store.live_devices(handle, self._clock_ms()),
            self._accounts.rotations(handle),
            account.signature,
        )

    # ------------------------------------------------------------------ leases

    def sweep(self, limit: int = 10_000) -> Swept:
        """Turn ended leases into tombstones and drop tombstones past their retention."""
        now_ms = self._clock_ms()
        expired = purged = 0
        changes: list[DeviceChanged] = []
        for entry in self._store.due_expiries(now_ms, limit):
            slot = self._store.device_slot(entry.handle, entry.device_id)
            if slot is None or slot.expires_at_ms != entry.expires_at_ms:
                self._store.delete_expiry_entry(entry)  # stale: cannot happen, heals if it does
            elif slot.live:
                self._store.put_device(
                    entry.handle,
                    entry.device_id,
                    seq=slot.seq,
                    expires_at_ms=now_ms + self._policy.tombstone_retention_ms,
                    device=b"",
                    previous=slot,
                )
                self.online -= 1
                expired += 1
                changes.append(
                    DeviceChanged(entry.handle, entry.device_id, Change.EXPIRED, seq=slot.seq)
                )
            else:
                self._store.delete_device(entry.handle, entry.device_id, slot)
                purged += 1
        return Swept(expired, purged, changes)


class Presence:
    """Presence on a node that holds every handle itself: admission, then its own replica,
    then its observers."""

    def __init__(
        self,
        admission: Admission,
        replica: Replica,
        observers: Sequence[PresenceObserver] = (),
    ) -> None:
        self.admission = admission
        self.replica = replica
        self._observers = list(observers)

    @property
    def online(self) -> int:
        return self.replica.online

    def publish(self, changes: Iterable[DeviceChanged | None]) -> None:
        for change in changes:
            if change is not None:
                for observer in self._observers:
                    observer.device_changed(change)

    def register(self, session_handle: str, signed: pb.SignedDeviceRecord) -> Registration:
        """Store a new or renewed record for the session's own account.

        Order of checks: cheap ones, then the stored state, then the signature.
        """
        return self.register_candidate(self.admission.parse(session_handle, signed))

    def register_candidate(self, candidate: Candidate) -> Registration:
        """:meth:`register` after the cheap checks (a cluster coordinator ran them)."""
        record = candidate.record
        self.replica.check_fresh(record.handle, record.device_id, record.seq)
        admitted = self.admission.admit(candidate)
        # No await since check_fresh: the write is still fresh, so it supersedes.
        self.publish([self.replica.apply(admitted.write)])
        return Registration(admitted.write.expires_at_ms, admitted.ttl_seconds)

    def unregister(self, session_handle: str, device_id: str, at_least_seq: int = 0) -> bool:
        """Replace the device's record by a tombstone that keeps its seq, or the client's
        higher ``at_least_seq`` (blocks replays); True when a running lease was removed."""
        removal = self.replica.removal(session_handle, device_id, at_least_seq)
        if removal is None:
            return False
        self.publish([self.replica.apply(removal.write)])
        return removal.lease_was_running

    def keep_alive(self, session_handle: str, device_id: str, seq: int) -> Registration:
        """Extend the lease of one of the session's own devices (see :func:`extended_lease`):
        no signature, no watch event, one store write."""
        extended = self.replica.extension(session_handle, device_id, seq)
        self.publish([self.replica.apply(extended.write)])
        return Registration(extended.write.expires_at_ms, extended.ttl_seconds)

    def apply_write(self, write: DeviceWrite, fresh: bool) -> DeviceChanged | None:
        """Apply a replicated write here and tell observers: ``fresh`` for a client's new
        registration (it must supersede, see :meth:`Replica.register`), otherwise a merge
        that may find the store already newer (then None)."""
        change = self.replica.register(write) if fresh else self.replica.apply(write)
        self.publish([change])
        return change

    def lookup(self, handle: str, quorum: bool = False) -> bytes:
        """``quorum`` asks for a majority of the replicas: here there is one copy, so any
        read is a quorum read."""
        return self.replica.lookup(handle)

    def lookup_many(self, handles: Sequence[str], quorum: bool = False) -> bytes:
        return self.replica.lookup_many(handles)

    def sweep(self, limit: int = 10_000) -> Swept:
        swept = self.replica.sweep(limit)
        self.publish(swept.changes)
        return swept
