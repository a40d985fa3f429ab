"""The supernode's embedded RocksDB store: the only module that imports rocksdict.

Key layout (one column family per kind of data; all integers big-endian so that byte order
is numeric order):

``accounts``  ``handle`` -> the account as created: the ``supernode.v1.Account`` exactly as its
              creator signed it and the CreateAccount signature
              (``supernode.directory.account_record``; older values: the bare Account).
``devices``   ``handle 0x00 device_id`` -> header ``expires_at_ms:u64 seq:u64`` + payload.
              The payload is a serialized ``supernode.v1.Device`` exactly as lookups serve
              it; an empty payload is a tombstone that remembers the seq of a removed
              device until it too expires. Handles never contain 0x00, so all devices of a
              handle are one prefix scan.
``expiry``    ``expires_at_ms:u64 handle 0x00 device_id`` -> empty. The expiry index: the
              sweeper reads it from the start up to now. RocksDB's own TTL mode is
              database-wide and returns expired data until compaction, so leases are ours.
``views``     ``handle`` -> ``min_expires_at_ms:u64`` + the serialized
              ``supernode.v1.LookupResponse`` (account and live devices) a lookup returns.
              A materialized view for the hot path: one point read, no framing. Written
              with the account and rewritten in the same WriteBatch as every change to the
              handle's devices. When ``min_expires_at_ms`` has passed, a lease ended and the
              sweeper has not buried it yet: readers fall back to the ``devices`` scan.
``search``    ``term 0x00 handle`` -> empty. Folded index terms (handle, display-name words) of
              discoverable accounts, written in the account's own WriteBatch; a query is a
              prefix scan.
``meta``      small named values: ``accounts_total`` (u64), ``token_secret`` (32 bytes),
              the cluster mirror's view and revision, and ``revoked/<name>``: a node
              alone's revoked sessions (``supernode.revocations`` names and encodes them).
              the cluster mirror's view and revision.
``account_state`` ``handle`` -> serialized ``supernode.internal.v1.AccountState``: what changes of
              an account after creation (its key rotations, its signed privacy settings);
              absent for an account that never changed. Rewritten with the handle's view
              in one WriteBatch (views carry the rotations).
``hints``     ``target 0x00 sequence:u64`` -> ``created_at_ms:u64`` + an opaque write (a
              cluster's hinted handoff: writes a replica missed, replayed when it returns).

Each logical change (create an account, put a record, expire it) is one atomic WriteBatch
through the WAL, so a ``kill -9`` loses nothing that was acknowledged. With
``sync_writes`` the WAL is also fsynced before the call returns, which covers power loss.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import cast

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from client_sdk.protocol import wire
from supernode.directory.account_record import AccountRecord
from supernode.directory.ports import DeviceSlot, ExpiryEntry
from supernode.internal.v1 import accounts_pb2

ACCOUNTS = "accounts"
DEVICES = "devices"
EXPIRY = "expiry"
VIEWS = "views"
SEARCH = "search"
META = "meta"
HINTS = "hints"
ACCOUNT_STATE = "account_state"
COLUMN_FAMILIES = (ACCOUNTS, DEVICES, EXPIRY, VIEWS, SEARCH, META, HINTS, ACCOUNT_STATE)

_HEADER = struct.Struct(">QQ")
HEADER_BYTES = _HEADER.size
_U64 = struct.Struct(">Q")
_ACCOUNTS_TOTAL = b"accounts_total"
_NEVER_MS = (1 << 64) - 1  # a view with no live device never goes stale
# Changed-key feed entries for account states (handles never hold 0x00, so these never name
# a view): a worker drops its cached state of the handle.
STATE_KEY_PREFIX = b"\x00state\x00"
_STATE_CACHE_BYTES = 16 << 20
_NO_STATE = b"\x00"  # cached: the account has no state (most accounts)
_REVOKED = b"revoked/"
# Told to ``on_commit`` among the changed view keys when revocations changed, so workers
# reload theirs; no view key starts with 0x00 (handles never hold it).
REVOCATIONS_CHANGED = b"\x00revoked"


class StoreError(Exception):
    """The data directory cannot be opened or used (locked by another process, corrupt)."""


def device_key(handle: str, device_id: str) -> bytes:
    return f"{handle}\x00{device_id}".encode()


def _handle_prefix(handle: str) -> bytes:
    return handle.encode() + b"\x00"


def _expiry_key(expires_at_ms: int, handle: str, device_id: str) -> bytes:
    return _U64.pack(expires_at_ms) + device_key(handle, device_id)


def _existing_families(path: Path) -> list[str]:
    """The column families a database at ``path`` has, besides the default; none if new."""
    if not (path / "CURRENT").exists():
        return []
    try:
        names: list[str] = Rdict.list_cf(str(path))
    except Exception:  # unreadable here: the open itself reports why
        return []
    return [name for name in names if name != "default"]


def rotations_of(state: bytes | None) -> list[bytes]:
    """The serialized ``SignedKeyRotation`` chain held in a stored ``AccountState``."""
    if not state:
        return []
    parsed = accounts_pb2.AccountState.FromString(state)
    return [rotation.SerializeToString() for rotation in parsed.rotations]


def _hint_key(target: str, sequence: int) -> bytes:
    return target.encode() + b"\x00" + _U64.pack(sequence)


def _options(block_cache: Cache | None = None) -> Options:
    options = Options(raw_mode=True)
    if block_cache is not None:
        table = BlockBasedOptions()
        table.set_block_cache(block_cache)
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
    return options


class ViewCache:
    """Recently used lookup views, in process memory, bounded by bytes (least recently used
    go first).

    Measured: inside a loaded server a RocksDB point read of a view costs 6-25 us (cold CPU
    caches between calls; 1.7 us in a tight loop), a dict hit well under 1 us, and the
    single-lookup path is within a few microseconds of the bare gRPC ceiling only with the
    dict. Write-through (every view write updates a cached entry, on the one event-loop
    thread), so it is never stale. An ``OrderedDict``, not a dict evicted through
    ``next(iter(d))``: that scans the deleted slots at the front of a dict's entry table, so
    with a full cache every eviction cost O(evictions so far), milliseconds at 1M users.
    """

    # Per-entry cost beyond the bytes: the key and value objects and the ordered-dict slot.
    OVERHEAD_BYTES = 200

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes) -> bytes | None:
        view = self._entries.get(key)
        if view is not None:
            self._entries.move_to_end(key)
        return view

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def put(self, key: bytes, view: bytes) -> None:
        if self.budget_bytes <= 0:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.used_bytes -= len(old) + len(key) + self.OVERHEAD_BYTES
        self._entries[key] = view
        self.used_bytes += len(view) + len(key) + self.OVERHEAD_BYTES
        while self.used_bytes > self.budget_bytes and self._entries:
            oldest, dropped = self._entries.popitem(last=False)
            self.used_bytes -= len(dropped) + len(oldest) + self.OVERHEAD_BYTES

    def discard(self, key: bytes) -> None:
        view = self._entries.pop(key, None)
        if view is not None:
            self.used_bytes -= len(view) + len(key) + self.OVERHEAD_BYTES

    def clear(self) -> None:
        self._entries.clear()
        self.used_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


class Store:
    """RocksDB-backed storage of accounts, device records, the expiry index and metadata."""

    def __init__(
        self,
        path: Path,
        *,
        sync_writes: bool = False,
        block_cache_bytes: int = 256 << 20,
        view_cache_bytes: int = 0,
        secondary_dir: Path | None = None,
    ) -> None:
        """``secondary_dir``: open read-only as a RocksDB secondary of the store at ``path``
        (another process's), keeping its own files there; :meth:`catch_up` follows."""
        self.path = path
        self.secondary = secondary_dir is not None
        cache = Cache(block_cache_bytes)
        options = _options(cache)
        if secondary_dir is None:
            path.mkdir(parents=True, exist_ok=True)
            options.create_if_missing(True)
            options.create_missing_column_families(True)
            options.set_max_background_jobs(2)
            access = AccessType.read_write()
        else:
            secondary_dir.mkdir(parents=True, exist_ok=True)
            options.set_max_open_files(-1)  # keep files the primary compacts away readable
            access = AccessType.secondary(str(secondary_dir))
        families = {name: _options(cache) for name in COLUMN_FAMILIES}
        # Families a newer version added are opened too (RocksDB refuses to open a database
        # without all of them), so rolling back to this version after an upgrade works.
        for name in _existing_families(path):
            families.setdefault(name, _options(cache))
        try:
            self._db = Rdict(
                str(path),
                options=options,
                column_families=families,
                access_type=access,
            )
        except Exception as exc:  # rocksdict raises plain Exception for lock and corruption
            raise StoreError(f"cannot open data directory {path}: {exc}") from exc
        self._accounts = self._db.get_column_family(ACCOUNTS)
        self._devices = self._db.get_column_family(DEVICES)
        self._expiry = self._db.get_column_family(EXPIRY)
        self._views = self._db.get_column_family(VIEWS)
        self._search = self._db.get_column_family(SEARCH)
        self._meta = self._db.get_column_family(META)
        self._hints = self._db.get_column_family(HINTS)
        self._account_state = self._db.get_column_family(ACCOUNT_STATE)
        self._handles = {name: self._db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        self._closed = False
        self.view_cache = ViewCache(view_cache_bytes)
        # Every presence read asks for the target's privacy. Most accounts never change
        # (no state row): a set says which did, so the common answer costs a set lookup
        # (measured: a LookupMany of 1,000 handles spent 1 ms asking the cache below, 35%
        # of the call). The rows' parsed values are cached: b"\x01" + state, or _NO_STATE.
        self._stated = self._handles_with_state()
        self.state_cache = ViewCache(_STATE_CACHE_BYTES)
        self._pending_views: list[tuple[bytes, bytes]] = []
        # Told (sequence, changed view keys) after every committed write: the change feed
        # that keeps worker processes' view caches in step (supernode.workers).
        self.on_commit: Callable[[int, list[bytes]], None] | None = None
        # Told the handle after every change of an account's state (the watch hub ends
        # the watches of it: what their callers may see changed).
        self.on_account_state: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Flush memtables and release the lock, so the next open needs no WAL replay."""
        if self._closed:
            return
        self._closed = True
        if not self.secondary:
            self._db.flush_wal(True)
            self._db.flush(True)
        self._db.close()
        # Column-family objects keep the database (and its LOCK file) alive until dropped.
        del self._accounts, self._devices, self._expiry, self._views, self._search, self._meta
        del self._hints, self._account_state
        del self._handles

    def compact(self) -> None:
        """Compact every column family now (after a bulk import), so that reads do not
        compete with background compaction once the node serves."""
        for cf in self._families():
            cf.compact_range(None, None)

    def checkpoint(self, target: Path) -> int:
        """Write a consistent copy of the whole store into ``target`` (which must not exist)
        while the node goes on writing, and return a sequence number it holds at least.

        RocksDB's checkpoint: file deletions pause, the memtables are flushed, and every live
        SST file (immutable) is hard-linked where the file system allows, copied otherwise,
        with the manifest and the WAL, so every column family is as of one point in time
        (each WriteBatch wholly in or wholly out). ``target`` opens as a normal store.
        """
        if self.secondary:
            raise StoreError("a checkpoint is taken by the primary, which owns the store")
        sequence = self.sequence()
        checkpoint = Checkpoint(self._db)
        try:
            checkpoint.create_checkpoint(str(target))
        except Exception as exc:  # rocksdict raises plain Exception
            raise StoreError(f"checkpoint into {target} failed: {exc}") from exc
        finally:
            del checkpoint  # it holds the database open
        return sequence

    @property
    def closed(self) -> bool:
        return self._closed

    def size_bytes(self) -> int:
        """On-disk SST bytes plus live memtables, across column families."""
        total = 0
        for cf in self._families():
            for prop in ("rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"):
                total += cf.property_int_value(prop) or 0
        return total

    def _families(self) -> tuple[Rdict, ...]:
        """Column-family objects in ``COLUMN_FAMILIES`` order."""
        return (
            self._accounts,
            self._devices,
            self._expiry,
            self._views,
            self._search,
            self._meta,
            self._hints,
            self._account_state,
        )

    def _write(self, batch: WriteBatch, also_changed: Sequence[bytes] = ()) -> None:
        pending, self._pending_views = self._pending_views, []
        if self.secondary:
            raise StoreError(f"{self.path}: a secondary is read-only; writes go to the primary")
        self._db.write(batch, self._write_options)
        for key, view in pending:  # write-through once durable; new views enter when read
            if key in self.view_cache:
                self.view_cache.put(key, view)
        if self.on_commit is not None:
            changed = [key for key, _ in pending]
            changed.extend(also_changed)
            self.on_commit(self._db.latest_sequence_number(), changed)

    # ------------------------------------------------------------------ following a primary

    def sequence(self) -> int:
        """The sequence number of the last write this store has (applied, for a secondary)."""
        return int(self._db.latest_sequence_number())

    def catch_up(self, changed_views: Sequence[bytes] | None) -> None:
        """Secondary: apply the primary's writes so far, then drop the cached views they
        changed, or every cached view for None (in that order: a read in between would
        re-cache the old view)."""
        self._db.try_catch_up_with_primary()
        if changed_views is None:
            self.view_cache.clear()
            self.state_cache.clear()
            self._stated = self._handles_with_state()
            return
        for key in changed_views:
            if key.startswith(STATE_KEY_PREFIX):
                handle = key[len(STATE_KEY_PREFIX) :]
                self._stated.add(handle.decode())
                self.state_cache.discard(handle)
            else:
                self.view_cache.discard(key)

    def _batch(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    # ------------------------------------------------------------------ meta

    def get_meta(self, name: str) -> bytes | None:
        value: bytes | None = self._meta.get(name.encode())
        return value

    def put_meta(self, name: str, value: bytes) -> None:
        batch = self._batch()
        batch.put(name.encode(), value, self._handles[META])
        self._write(batch)

    def put_revocation(self, name: str, value: bytes) -> None:
        self.update_revocations({name: value})

    def delete_revocations(self, names: Sequence[str]) -> None:
        self.update_revocations(dict.fromkeys(names))

    def update_revocations(self, changes: Mapping[str, bytes | None]) -> None:
        """Put each named revocation, or delete it for None: one batch."""
        batch = self._batch()
        for name, value in changes.items():
            if value is None:
                batch.delete(_REVOKED + name.encode(), self._handles[META])
            else:
                batch.put(_REVOKED + name.encode(), value, self._handles[META])
        self._write(batch, (REVOCATIONS_CHANGED,))

    def revocations(self) -> list[tuple[str, bytes]]:
        """Every stored revocation as ``(name, value)``: a prefix scan, at start-up and when
        a worker's feed says they changed (there are at most an hour's worth)."""
        found: list[tuple[str, bytes]] = []
        iterator = self._meta.iter()
        iterator.seek(_REVOKED)
        while iterator.valid():
            key: bytes = iterator.key()
            if not key.startswith(_REVOKED):
                break
            found.append((key[len(_REVOKED) :].decode(errors="replace"), iterator.value()))
            iterator.next()
        return found

    # ------------------------------------------------------------------ accounts

    def get_account(self, handle: str) -> AccountRecord | None:
        value: bytes | None = self._accounts.get(handle.encode())
        return None if value is None else AccountRecord.decode(value)

    def get_accounts(self, handles: list[str]) -> list[AccountRecord | None]:
        values = cast(list[bytes | None], self._accounts[[h.encode() for h in handles]])
        return [None if value is None else AccountRecord.decode(value) for value in values]

    def insert_account(
        self, handle: str, account: AccountRecord, search_terms: Sequence[str] = ()
    ) -> bool:
        """Store a new account and its search terms; False if the handle is taken.

        Callers serialize writes (one event loop), so check-then-write cannot race.
        """
        key = handle.encode()
        if self._accounts.get(key) is not None:
            return False
        batch = self._batch()
        batch.put(key, account.encode(), self._handles[ACCOUNTS])
        # Usually no devices yet; in a cluster a device may reach the handle's owner before
        # the account reaches the owner's mirror, and the view must include it.
        self._put_view(batch, handle, account=account)
        for term in search_terms:
            batch.put(f"{term}\x00{handle}".encode(), b"", self._handles[SEARCH])
        batch.put(_ACCOUNTS_TOTAL, _U64.pack(self.account_count() + 1), self._handles[META])
        self._write(batch)
        return True

    async def claim_account(
        self, handle: str, account: AccountRecord, search_terms: Sequence[str] = ()
    ) -> bool:
        """The registry port's claim: on one node, the local insert (nothing to wait for)."""
        return self.insert_account(handle, account, search_terms)

    def search_handles(self, term_prefix: str, max_entries: int) -> list[str]:
        """Handles indexed under a term starting with ``term_prefix``, in term order, unique,
        reading at most ``max_entries`` index entries (bounds the work of short queries)."""
        prefix = term_prefix.encode()
        handles: dict[str, None] = {}
        iterator = self._search.iter()
        iterator.seek(prefix)
        read = 0
        while iterator.valid() and read < max_entries:
            key: bytes = iterator.key()
            if not key.startswith(prefix):
                break
            handles[key.rpartition(b"\x00")[2].decode()] = None
            read += 1
            iterator.next()
        return list(handles)

    def account_count(self) -> int:
        raw = self._meta.get(_ACCOUNTS_TOTAL)
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    # ------------------------------------------------------------------ account state

    def _handles_with_state(self) -> set[str]:
        """Accounts with a state row: a scan of the account_state family's keys (rows of
        accounts that changed after creation; never deleted)."""
        handles: set[str] = set()
        iterator = self._account_state.iter()
        iterator.seek_to_first()
        while iterator.valid():
            handles.add(iterator.key().decode())
            iterator.next()
        return handles

    def changed_accounts(self, handles: Iterable[str]) -> list[str]:
        """The ``handles`` that have a state (the rest never changed: visible to all)."""
        stated = self._stated
        return [handle for handle in handles if handle in stated]

    def get_account_state(self, handle: str) -> bytes | None:
        """The handle's serialized ``AccountState``, or None when it never changed."""
        if handle not in self._stated:
            return None
        key = handle.encode()
        cached = self.state_cache.get(key)
        if cached is None:
            stored: bytes | None = self._account_state.get(key)
            cached = _NO_STATE if stored is None else b"\x01" + stored
            self.state_cache.put(key, cached)
        return None if cached == _NO_STATE else cached[1:]

    def put_account_state(self, handle: str, state: bytes) -> None:
        """Store the handle's new state and its view (which carries the rotations) in one
        batch; workers are told through the changed-key feed."""
        key = handle.encode()
        batch = self._batch()
        batch.put(key, state, self._handles[ACCOUNT_STATE])
        self._put_view(batch, handle, state=state)
        self._write(batch, (STATE_KEY_PREFIX + key,))
        self._stated.add(handle)
        self.state_cache.discard(key)
        if self.on_account_state is not None:
            self.on_account_state(handle)

    async def update_account_state(
        self, handle: str, update: Callable[[bytes | None], bytes]
    ) -> bytes:
        """The registry port's compare-and-swap: on one node a read-modify-write with no
        await in between (one event loop), so it cannot race."""
        current = self.get_account_state(handle)
        state = update(current)
        if state != current:
            self.put_account_state(handle, state)
        return state

    # ------------------------------------------------------------------ devices

    def device_slot(self, handle: str, device_id: str) -> DeviceSlot | None:
        value = self._devices.get(device_key(handle, device_id))
        if value is None:
            return None
        expires_at_ms, seq = _HEADER.unpack_from(value)
        return DeviceSlot(expires_at_ms, seq, bytes(value[HEADER_BYTES:]))

    def put_device(
        self,
        handle: str,
        device_id: str,
        *,
        seq: int,
        expires_at_ms: int,
        device: bytes,
        previous: DeviceSlot | None,
    ) -> None:
        """Write a live record (``device`` non-empty) or a tombstone (``device`` empty).

        Replaces ``previous``'s expiry-index entry in the same batch, so the index never
        points at a lease that no longer exists.
        """
        batch = self._batch()
        if previous is not None:
            batch.delete(
                _expiry_key(previous.expires_at_ms, handle, device_id), self._handles[EXPIRY]
            )
        value = _HEADER.pack(expires_at_ms, seq) + device
        batch.put(device_key(handle, device_id), value, self._handles[DEVICES])
        batch.put(_expiry_key(expires_at_ms, handle, device_id), b"", self._handles[EXPIRY])
        self._put_view(batch, handle, device_key(handle, device_id), value)
        self._write(batch)

    def delete_device(self, handle: str, device_id: str, previous: DeviceSlot) -> None:
        batch = self._batch()
        batch.delete(_expiry_key(previous.expires_at_ms, handle, device_id), self._handles[EXPIRY])
        batch.delete(device_key(handle, device_id), self._handles[DEVICES])
        self._put_view(batch, handle, device_key(handle, device_id), None)
        self._write(batch)

    def _put_view(
        self,
        batch: WriteBatch,
        handle: str,
        changed_key: bytes = b"",
        changed_value: bytes | None = None,
        *,
        account: AccountRecord | None = None,
        state: bytes | None = None,
    ) -> None:
        """Add the handle's rebuilt lookup view, as it will be once ``batch`` is written
        (with ``changed_key`` holding ``changed_value``, ``account`` when it is new and
        ``state`` when it changes)."""
        values: dict[bytes, bytes] = {}
        prefix = _handle_prefix(handle)
        iterator = self._devices.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            values[iterator.key()] = iterator.value()
            iterator.next()
        if changed_value is None:
            values.pop(changed_key, None)
        else:
            values[changed_key] = changed_value
        live = [v for _, v in sorted(values.items()) if len(v) > HEADER_BYTES]
        if account is None:
            account = self.get_account(handle)
        if account is None:
            return  # devices of an account that does not exist are never served
        min_expires = min((_U64.unpack_from(v)[0] for v in live), default=_NEVER_MS)
        if state is None:
            state = self.get_account_state(handle)
        response = wire.lookup_response(
            account.account,
            [v[HEADER_BYTES:] for v in live],
            rotations_of(state),
            account.signature,
        )
        self._put_view_value(batch, handle.encode(), _U64.pack(min_expires) + response)

    def _put_view_value(self, batch: WriteBatch, key: bytes, view: bytes) -> None:
        batch.put(key, view, self._handles[VIEWS])
        self._pending_views.append((key, view))

    def fresh_lookup_responses(self, handles: list[str], now_ms: int) -> list[bytes | None]:
        """Per handle, the serialized ``LookupResponse`` from its view: one multi-get.

        None when there is no usable view: no such account, or a lease in the view has
        ended and is not yet swept; the caller then takes the slow path.
        """
        keys = [h.encode() for h in handles]
        cache = self.view_cache
        views = [cache.get(key) for key in keys]
        missing = [i for i, view in enumerate(views) if view is None]
        if missing:
            read = cast(list[bytes | None], self._views[[keys[i] for i in missing]])
            for i, view in zip(missing, read, strict=True):
                views[i] = view
                if view is not None:
                    cache.put(keys[i], view)
        return [
            view[_U64.size :] if view is not None and _U64.unpack_from(view)[0] > now_ms else None
            for view in views
        ]

    def delete_expiry_entry(self, entry: ExpiryEntry) -> None:
        batch = self._batch()
        batch.delete(
            _expiry_key(entry.expires_at_ms, entry.handle, entry.device_id), self._handles[EXPIRY]
        )
        self._write(batch)

    def live_devices(self, handle: str, now_ms: int) -> list[bytes]:
        """Serialized ``Device`` messages of a handle whose lease has not ended, key order."""
        prefix = _handle_prefix(handle)
        found: list[bytes] = []
        iterator = self._devices.iter()
        iterator.seek(prefix)
        while iterator.valid():
            if not iterator.key().startswith(prefix):
                break
            value: bytes = iterator.value()
            if len(value) > HEADER_BYTES and _U64.unpack_from(value)[0] > now_ms:
                found.append(value[HEADER_BYTES:])
            iterator.next()
        return found

    def device_versions(self, handle: str) -> list[tuple[str, int, int, bytes]]:
        """Every stored version of a handle's devices, tombstones included, key order."""
        prefix = _handle_prefix(handle)
        found: list[tuple[str, int, int, bytes]] = []
        iterator = self._devices.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            value: bytes = iterator.value()
            expires_at_ms, seq = _HEADER.unpack_from(value)
            device_id = iterator.key()[len(prefix) :].decode()
            found.append((device_id, expires_at_ms, seq, value[HEADER_BYTES:]))
            iterator.next()
        return found

    def device_page(
        self, start: bytes, limit: int
    ) -> tuple[list[tuple[str, str, int, int, bytes]], bytes | None]:
        """Up to ``limit`` stored versions from key ``start`` on, in key order, as
        ``(handle, device_id, expires_at_ms, seq, payload)``, and the key to continue from
        (None at the end). A partition's move reads the devices family page by page, so a
        stream never holds one iterator across the awaits between its pages."""
        found: list[tuple[str, str, int, int, bytes]] = []
        iterator = self._devices.iter()
        iterator.seek(start)
        while iterator.valid():
            key: bytes = iterator.key()
            if len(found) >= limit:
                return found, key
            value: bytes = iterator.value()
            expires_at_ms, seq = _HEADER.unpack_from(value)
            handle, _, device_id = key.partition(b"\x00")
            found.append(
                (handle.decode(), device_id.decode(), expires_at_ms, seq, value[HEADER_BYTES:])
            )
            iterator.next()
        return found, None

    def device_count(self, handle: str) -> int:
        """Devices of a handle with a stored record or tombstone (live or not yet swept)."""
        prefix = _handle_prefix(handle)
        count = 0
        iterator = self._devices.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            if len(iterator.value()) > HEADER_BYTES:
                count += 1
            iterator.next()
        return count

    def count_live_devices(self, now_ms: int) -> int:
        """A full scan: used once at start-up to seed the devices-online gauge. It bypasses
        the block cache (a scan of 10M users would fill it with blocks no lookup wants)."""
        count = 0
        scan = ReadOptions()
        scan.fill_cache(False)  # type: ignore[call-arg]  # rocksdict's stub omits the argument
        iterator = self._devices.iter(scan)
        iterator.seek_to_first()
        while iterator.valid():
            value = iterator.value()
            if len(value) > HEADER_BYTES and _U64.unpack_from(value)[0] > now_ms:
                count += 1
            iterator.next()
        return count

    def due_expiries(self, now_ms: int, limit: int) -> list[ExpiryEntry]:
        """Expiry-index entries with ``expires_at_ms <= now_ms``, oldest first."""
        entries: list[ExpiryEntry] = []
        read_options = ReadOptions()
        read_options.set_iterate_upper_bound(_U64.pack(now_ms + 1))
        iterator = self._expiry.iter(read_options)
        iterator.seek_to_first()
        while iterator.valid() and len(entries) < limit:
            key: bytes = iterator.key()
            handle, _, device_id = key[_U64.size :].decode().partition("\x00")
            entries.append(ExpiryEntry(_U64.unpack_from(key)[0], handle, device_id))
            iterator.next()
        return entries

    # ------------------------------------------------------------------ hints

    def put_hint(self, target: str, sequence: int, created_at_ms: int, write: bytes) -> None:
        batch = self._batch()
        value = _U64.pack(created_at_ms) + write
        batch.put(_hint_key(target, sequence), value, self._handles[HINTS])
        self._write(batch)

    def hints(self, target: str, limit: int) -> list[tuple[int, int, bytes]]:
        """The oldest ``limit`` hints for ``target``: (sequence, created_at_ms, write)."""
        prefix = target.encode() + b"\x00"
        found: list[tuple[int, int, bytes]] = []
        iterator = self._hints.iter()
        iterator.seek(prefix)
        while iterator.valid() and len(found) < limit:
            key: bytes = iterator.key()
            if not key.startswith(prefix):
                break
            value: bytes = iterator.value()
            sequence = _U64.unpack_from(key, len(prefix))[0]
            found.append((sequence, _U64.unpack_from(value)[0], value[_U64.size :]))
            iterator.next()
        return found

    def delete_hints(self, target: str, sequences: Sequence[int]) -> None:
        batch = self._batch()
        for sequence in sequences:
            batch.delete(_hint_key(target, sequence), self._handles[HINTS])
        self._write(batch)

    def hint_counts(self) -> dict[str, tuple[int, int]]:
        """Per target: (hints kept, highest sequence); a scan, once at start-up."""
        counts: dict[str, tuple[int, int]] = {}
        iterator = self._hints.iter()
        iterator.seek_to_first()
        while iterator.valid():
            key: bytes = iterator.key()
            target, _, rest = key.partition(b"\x00")
            name = target.decode()
            kept, _ = counts.get(name, (0, 0))
            counts[name] = (kept + 1, _U64.unpack(rest)[0])
            iterator.next()
        return counts

    def raw_device_value(self, handle: str, device_id: str) -> bytes | None:
        """The stored bytes of a device; for tests and repair tools, never the hot path."""
        value: bytes | None = self._devices.get(device_key(handle, device_id))
        return value

    def put_raw_device_value(self, handle: str, device_id: str, value: bytes) -> None:
        """Overwrite a device's stored bytes; for tests that forge records behind our back."""
        batch = self._batch()
        batch.put(device_key(handle, device_id), value, self._handles[DEVICES])
        self._put_view(batch, handle, device_key(handle, device_id), value)
        self._write(batch)

    def dump(self) -> dict[str, dict[bytes, bytes]]:
        """Every key and value of every column family; for tests that prove nothing changed."""
        dumped: dict[str, dict[bytes, bytes]] = {}
        for name, cf in zip(COLUMN_FAMILIES, self._families(), strict=True):
            iterator = cf.iter()
            iterator.seek_to_first()
            entries: dict[bytes, bytes] = {}
            while iterator.valid():
                entries[iterator.key()] = iterator.value()
                iterator.next()
            dumped[name] = entries
        return dumped
