"""The cluster's only door to etcd: typed reads, writes, transactions, kept leases, watches.

Nothing else in the server imports ``aetcd``; the rest of the cluster speaks in the types
below (:class:`Entry`, :class:`Snapshot`, :class:`WatchBatch`) and catches one error for an
outage, :class:`EtcdUnavailable`, whose message says which endpoints were tried and why.

We use the etcd API stubs that ship inside ``aetcd`` (``aetcd.rpc``) on our own channels,
not its ``Client``: that client fixes one timeout per client (we spend a per-call budget over
several endpoints), keeps no lease alive and its watcher drops the response headers and
progress notifications a resumable watch needs. What this module adds:

* **Failover.** One channel per endpoint. An operation tries the endpoint that last
  answered, then the others, in rounds with jittered backoff, until ``call_timeout_s``
  runs out; each attempt gets at most ``attempt_timeout_s`` (a member that lost its quorum
  must not eat the whole budget) and first waits up to ``connect_timeout_s`` for its
  channel. A write that fails after it was sent may have been applied: ``put``/``delete``
  are simply repeated, and a repeated conditional write treats the key already holding
  exactly its value (and lease) as its own success, so an ambiguous retry never reports a
  lost race that it won.
* **Kept leases** (:class:`KeptLease`): refreshed every TTL/3 in a background task; when
  no refresh succeeds before the TTL runs out, or etcd says the lease is gone, ``lost`` is
  set and the lease is never re-granted behind the owner's back (the owner grants a new
  one and re-puts its keys).
* **Resumable watches** (:class:`PrefixWatch`): after a broken stream or an etcd restart
  the watch is re-created from the last delivered revision + 1 on the next endpoint, so
  no event is lost or repeated; a compacted start revision raises :class:`Compacted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from supernode import transport
from supernode.tls import NodeTls

T = TypeVar("T")
Clock = Callable[[], float]

# etcd cancels a stream carrying this when its member loses the leader, instead of leaving
# the watch silently stuck on a partitioned member (clientv3's WithRequireLeader).
_REQUIRE_LEADER = (("hasleader", "true"),)
_MAX_PAGINATION_RESTARTS = 3


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Entry:
    """One key as etcd stores it."""

    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class Snapshot:
    """Every key under a prefix as of one store ``revision`` (watch from ``revision + 1``)."""

    entries: list[Entry]
    revision: int


class EventKind(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class WatchEvent:
    """One change; a delete carries an empty value and the revision of the deletion."""

    kind: EventKind
    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class WatchBatch:
    """Changes delivered together; every change up to ``revision`` has now been delivered.

    Without events it is a progress report: nothing changed under the prefix up to
    ``revision`` (a mirror may record it as applied).
    """

    events: list[WatchEvent]
    revision: int


# --------------------------------------------------------------------------- errors


class EtcdError(Exception):
    """etcd refused a request for a reason other than an outage (the message has it)."""


class EtcdUnavailable(EtcdError):
    """No endpoint served the operation within its budget; the node answers UNAVAILABLE."""

    def __init__(self, operation: str, failures: Mapping[str, str], budget_s: float) -> None:
        self.operation = operation
        self.failures = dict(failures)
        super().__init__(describe_outage(operation, failures, budget_s))


class Compacted(EtcdError):
    """The requested revision is gone from etcd's history: resync (get_prefix + watch)."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"etcd history is compacted up to revision {compact_revision}")


class LeaseNotFound(EtcdError):
    """The lease expired or was revoked: grant a new one and put the keys again."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class EtcdConfig:
    """Where etcd is and how long one operation may take."""

    endpoints: tuple[str, ...]  # "host:port" of each member
    call_timeout_s: float = 5.0  # one operation, over every endpoint and retry
    attempt_timeout_s: float = 2.0  # one request to one endpoint
    connect_timeout_s: float = 1.0  # waiting for one endpoint's channel before moving on
    page_size: int = 1000  # keys per Range while reading a prefix
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    # Mutual TLS to etcd (``supernode.transport.open_etcd``); None: plaintext.
    tls: NodeTls | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", tuple(self.endpoints))  # a list is fine too
        if not self.endpoints:
            raise ValueError("etcd needs at least one endpoint")
        for endpoint in self.endpoints:
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"etcd endpoint must be host:port, got {endpoint!r}")
        if min(self.call_timeout_s, self.attempt_timeout_s, self.connect_timeout_s) <= 0:
            raise ValueError("etcd timeouts must be positive")
        if self.page_size < 1:
            raise ValueError("etcd page_size must be at least 1")


# --------------------------------------------------------------------------- pure helpers


def prefix_range_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``.

    The last byte below 0xff is incremented and the rest dropped; a prefix of only 0xff
    bytes (or empty) has no upper bound, which etcd spells ``b"\\0"``.
    """
    for index in range(len(prefix) - 1, -1, -1):
        if prefix[index] < 0xFF:
            return prefix[:index] + bytes([prefix[index] + 1])
    return b"\0"


class Failure(enum.Enum):
    """What a gRPC error from etcd means for the caller."""

    TRANSIENT = "transient"  # try another endpoint, later: an outage, election or overload
    LEASE_NOT_FOUND = "lease not found"
    COMPACTED = "compacted"
    REFUSED = "refused"  # the request itself is wrong; retrying cannot help


_TRANSIENT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNKNOWN", "ABORTED"}
    | {"CANCELLED", "INTERNAL"}  # a stream cut by a restarting member
)


def classify(code: str, details: str) -> Failure:
    """Map a status code name and etcd's message to a :class:`Failure`."""
    if code in _TRANSIENT_CODES:
        return Failure.TRANSIENT
    if code == "NOT_FOUND" and "lease not found" in details:
        return Failure.LEASE_NOT_FOUND
    if code == "OUT_OF_RANGE" and "compacted" in details:
        return Failure.COMPACTED
    return Failure.REFUSED


def describe_outage(operation: str, failures: Mapping[str, str], budget_s: float) -> str:
    """The message of :class:`EtcdUnavailable`: each endpoint tried and its last failure."""
    tried = "; ".join(f"{endpoint}: {reason}" for endpoint, reason in failures.items())
    return f"etcd unavailable for {operation} within {budget_s:g} s (tried {tried or 'none'})"


class Backoff:
    """Jittered exponential delays between retries (``rng`` injected for tests)."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng
        self._next_s = initial_s

    def next_delay(self) -> float:
        """Between half and all of the current step; the step doubles up to ``max_s``."""
        delay = self._next_s * (0.5 + 0.5 * self._rng.random())
        self._next_s = min(self._max_s, self._next_s * 2)
        return delay

    def reset(self) -> None:
        self._next_s = self._initial_s


class WatchCursor:
    """Where a resumable watch stands (sans-IO): the next revision it must deliver.

    Resuming from :attr:`next_revision` after any disconnect neither loses nor repeats an
    event: etcd never splits one revision's events across responses, and events below the
    cursor (which a resumed stream cannot send, but a bug could) are dropped.
    """

    def __init__(self, start_revision: int) -> None:
        if start_revision < 0:
            raise ValueError(f"start revision must be >= 0, got {start_revision}")
        self.next_revision = start_revision  # 0: "from now", fixed by the first created

    def created(self, header_revision: int) -> None:
        """A watch was created at store revision ``header_revision``."""
        if self.next_revision == 0:
            self.next_revision = header_revision + 1

    def events(self, events: Sequence[WatchEvent]) -> WatchBatch | None:
        """The batch to deliver for these events (None if all were delivered already)."""
        fresh = [event for event in events if event.mod_revision >= self.next_revision]
        if not fresh:
            return None
        last = max(event.mod_revision for event in fresh)
        self.next_revision = last + 1
        return WatchBatch(fresh, last)

    def progress(self, header_revision: int) -> WatchBatch | None:
        """A progress notification: nothing changed up to ``header_revision``.

        etcd sends these only to watchers that have caught up, so the header revision is
        safe to resume from (unlike the header of a catch-up event response).
        """
        if header_revision < self.next_revision:
            return None
        self.next_revision = header_revision + 1
        return WatchBatch([], header_revision)


@dataclass
class LeaseSchedule:
    """When a kept lease is refreshed next and when it counts as lost (sans-IO).

    Times are from one monotonic clock. A refresh is timed from when it was *sent*: etcd
    restarted the TTL no earlier than that, so the local expiry is never later than etcd's.
    """

    expires_at: float
    next_refresh_at: float

    @classmethod
    def granted(cls, sent_at: float, ttl: float) -> LeaseSchedule:
        return cls(expires_at=sent_at + ttl, next_refresh_at=sent_at + ttl / 3)

    def refreshed(self, sent_at: float, ttl: float) -> None:
        self.expires_at = sent_at + ttl
        self.next_refresh_at = sent_at + ttl / 3

    def failed(self, now: float, retry_in: float) -> None:
        """A refresh failed: try again soon, but no later than the expiry."""
        self.next_refresh_at = min(now + retry_in, self.expires_at)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def _entry(kv: Any) -> Entry:
    return Entry(bytes(kv.key), bytes(kv.value), int(kv.mod_revision), int(kv.create_revision))


def _watch_event(event: Any) -> WatchEvent:
    kind = EventKind.DELETE if event.type == 1 else EventKind.PUT  # mvccpb.Event.DELETE = 1
    kv = event.kv
    return WatchEvent(kind, bytes(kv.key), bytes(kv.value), int(kv.mod_revision))


# --------------------------------------------------------------------------- I/O


class _Endpoint:
    """One member's channel and stubs."""

    def __init__(self, index: int, address: str, tls: NodeTls | None) -> None:
        self.index = index
        self.address = address
        self.channel: Any = transport.open_etcd(address, tls)
        self.kv: Any = rpc_pb2_grpc.KVStub(self.channel)
        self.lease: Any = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch: Any = rpc_pb2_grpc.WatchStub(self.channel)

    def state(self) -> str:
        return str(self.channel.get_state(try_to_connect=False).name)

    async def ready(self, wait_s: float) -> bool:
        """True once the channel is connected; False if its last attempt failed or after
        ``wait_s``. Requests go out only on a ready channel, so a failure here means the
        request never reached etcd (a later one may have been applied without an answer)."""
        connectivity = grpc.ChannelConnectivity
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        state = self.channel.get_state(try_to_connect=True)
        while state != connectivity.READY:
            remaining = deadline - loop.time()
            if state in (connectivity.TRANSIENT_FAILURE, connectivity.SHUTDOWN) or remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self.channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True


class _StreamBroken(Exception):
    """A watch or keepalive stream ended or could not be set up; worth retrying elsewhere."""


class EtcdClient:
    """Typed etcd operations over every endpoint of one cluster (create in the event loop).

    ``async with EtcdClient(EtcdConfig(("127.0.0.1:2379",))) as etcd:`` or call
    :meth:`close`. Every operation raises :class:`EtcdUnavailable` when no endpoint served
    it within ``call_timeout_s``.
    """

    def __init__(
        self,
        config: EtcdConfig,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._endpoints = [
            _Endpoint(i, address, config.tls) for i, address in enumerate(config.endpoints)
        ]
        self._preferred = 0
        self._closed = False
        self._leases: set[KeptLease] = set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop keeping leases alive (without revoking them), end watches, close channels."""
        if self._closed:
            return
        self._closed = True
        for lease in list(self._leases):
            await lease.abandon()
        for endpoint in self._endpoints:
            await endpoint.channel.close()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ keys

    async def get(self, key: bytes) -> Entry | None:
        """The key's current entry (a linearizable read), or None if it does not exist."""
        response = await self._range(f"get {key!r}", rpc_pb2.RangeRequest(key=key))
        return _entry(response.kvs[0]) if response.kvs else None

    async def get_prefix(self, prefix: bytes) -> Snapshot:
        """Every key under ``prefix`` at one revision, read in pages of ``page_size``.

        Later pages read at the first page's revision, so the snapshot is consistent even
        while others write. A compaction past that revision mid-read restarts the read.
        For a prefix too big to hold in memory, use :meth:`prefix_pages`.
        """
        for _ in range(_MAX_PAGINATION_RESTARTS):
            with contextlib.suppress(Compacted):
                entries: list[Entry] = []
                revision = 0
                async for page in self.prefix_pages(prefix):
                    entries.extend(page.entries)
                    revision = page.revision
                return Snapshot(entries, revision)
        raise EtcdError(f"get_prefix {prefix!r}: history compacted under every attempt")

    async def prefix_pages(self, prefix: bytes) -> AsyncIterator[Snapshot]:
        """Every key under ``prefix`` at one revision, one page (``page_size`` keys) at a
        time, in key order; each page carries that revision. ``Compacted`` when history
        past it was compacted mid-read: the caller starts again (pages already taken stay
        valid, just older)."""
        range_end = prefix_range_end(prefix)
        revision = 0
        start = prefix
        more = True
        while more:  # each page starts after the last key of the one before
            request = rpc_pb2.RangeRequest(
                key=start, range_end=range_end, limit=self.config.page_size, revision=revision
            )
            response = await self._range(f"get_prefix {prefix!r}", request)
            revision = revision or int(response.header.revision)
            page = [_entry(kv) for kv in response.kvs]
            more = bool(response.more) and bool(page)
            if page:
                start = page[-1].key + b"\0"
            yield Snapshot(page, revision)

    async def _range(self, operation: str, request: Any) -> Any:
        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> Any:
            return await endpoint.kv.Range(request, timeout=limit_s)

        return await self._call(operation, attempt)

    async def put(self, key: bytes, value: bytes, lease: KeptLease | int | None = None) -> int:
        """Store ``value`` (under ``lease`` if given); return the new store revision.

        Raises :class:`LeaseNotFound` when the lease has expired.
        """
        request = rpc_pb2.PutRequest(key=key, value=value, lease=_lease_id(lease))

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> int:
            response = await endpoint.kv.Put(request, timeout=limit_s)
            return int(response.header.revision)

        return await self._call(f"put {key!r}", attempt)

    async def delete(self, key: bytes) -> None:
        """Remove the key (nothing happens if it does not exist)."""
        request = rpc_pb2.DeleteRangeRequest(key=key)

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> None:
            await endpoint.kv.DeleteRange(request, timeout=limit_s)

        await self._call(f"delete {key!r}", attempt)

    async def create_if_absent(
        self, key: bytes, value: bytes, lease: KeptLease | int | None = None
    ) -> bool:
        """Store ``value`` only if the key does not exist; True if this call created it."""
        compare = rpc_pb2.Compare(
            key=key,
            target=rpc_pb2.Compare.CREATE,
            result=rpc_pb2.Compare.EQUAL,
            create_revision=0,
        )
        return await self._conditional_put(f"create_if_absent {key!r}", compare, key, value, lease)

    async def compare_and_swap(
        self, key: bytes, value: bytes, mod_revision: int, lease: KeptLease | int | None = None
    ) -> bool:
        """Store ``value`` only if the key's mod revision is still ``mod_revision`` (0: only
        if the key does not exist); True if this call stored it."""
        compare = rpc_pb2.Compare(
            key=key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=mod_revision,
        )
        return await self._conditional_put(f"compare_and_swap {key!r}", compare, key, value, lease)

    async def _conditional_put(
        self, operation: str, compare: Any, key: bytes, value: bytes, lease: KeptLease | int | None
    ) -> bool:
        lease_id = _lease_id(lease)
        request = rpc_pb2.TxnRequest(
            compare=[compare],
            success=[
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease_id)
                )
            ],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
        )

        async def attempt(endpoint: _Endpoint, limit_s: float, retry: bool) -> bool:
            response = await endpoint.kv.Txn(request, timeout=limit_s)
            if response.succeeded:
                return True
            if not retry:
                return False
            # An earlier attempt may have been applied: the key holding exactly our value
            # and lease is taken as our own write (callers make values unique per writer).
            kvs = response.responses[0].response_range.kvs
            return bool(kvs) and kvs[0].value == value and int(kvs[0].lease) == lease_id

        return await self._call(operation, attempt)

    async def compact(self, revision: int, *, physical: bool = False) -> None:
        """Drop history below ``revision`` (already compacted further: nothing to do)."""
        request = rpc_pb2.CompactionRequest(revision=revision, physical=physical)

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> None:
            await endpoint.kv.Compact(request, timeout=limit_s)

        with contextlib.suppress(Compacted):
            await self._call(f"compact {revision}", attempt)

    # ------------------------------------------------------------------ leases

    async def grant_kept_lease(self, ttl: int) -> KeptLease:
        """Grant a lease of ``ttl`` seconds and keep it alive until revoked or lost.

        etcd may grant more than asked (its minimum TTL; 2 s with default elections):
        :attr:`KeptLease.ttl` is what it granted.
        """
        sent_at = self._clock()
        response = await self._grant(ttl)
        lease = KeptLease(self, int(response.ID), int(response.TTL), sent_at)
        self._leases.add(lease)
        return lease

    async def grant_lease(self, ttl: int) -> int:
        """Grant a lease of ``ttl`` seconds that is never refreshed: keys put under it live
        that long and then go by themselves (etcd may grant more than asked)."""
        return int((await self._grant(ttl)).ID)

    async def _grant(self, ttl: int) -> Any:
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 s, got {ttl}")
        request = rpc_pb2.LeaseGrantRequest(TTL=ttl)

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> Any:
            return await endpoint.lease.LeaseGrant(request, timeout=limit_s)

        response = await self._call(f"grant lease ttl={ttl}", attempt)
        if response.error:
            raise EtcdError(f"etcd refused a lease of {ttl} s: {response.error}")
        return response

    async def _refresh_lease(self, lease_id: int, budget_s: float) -> int:
        """One keepalive; the TTL etcd restarted (0: the lease no longer exists)."""
        request = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> int:
            call = endpoint.lease.LeaseKeepAlive(timeout=limit_s)
            try:
                await call.write(request)
                response = await call.read()
            finally:
                call.cancel()
            if response is grpc.aio.EOF:
                raise _StreamBroken("keepalive stream ended without an answer")
            return int(response.TTL)

        return await self._call(f"keep lease {lease_id:x} alive", attempt, budget_s=budget_s)

    async def _revoke_lease(self, lease_id: int) -> None:
        request = rpc_pb2.LeaseRevokeRequest(ID=lease_id)

        async def attempt(endpoint: _Endpoint, limit_s: float, _retry: bool) -> None:
            await endpoint.lease.LeaseRevoke(request, timeout=limit_s)

        with contextlib.suppress(LeaseNotFound):  # expired meanwhile: its keys are gone too
            await self._call(f"revoke lease {lease_id:x}", attempt)

    def _forget(self, lease: KeptLease) -> None:
        self._leases.discard(lease)

    # ------------------------------------------------------------------ watches

    def watch_prefix(self, prefix: bytes, start_revision: int) -> PrefixWatch:
        """Every change under ``prefix`` from ``start_revision`` on (0: from now), in order,
        across disconnects, until the caller stops iterating or the client closes."""
        return PrefixWatch(self, prefix, start_revision)

    # ------------------------------------------------------------------ failover

    def _rotation(self, first: int | None = None) -> Iterator[_Endpoint]:
        start = self._preferred if first is None else first
        count = len(self._endpoints)
        return (self._endpoints[(start + offset) % count] for offset in range(count))

    def _backoff(self) -> Backoff:
        return Backoff(self.config.backoff_initial_s, self.config.backoff_max_s, self._rng)

    async def _call(
        self,
        operation: str,
        attempt: Callable[[_Endpoint, float, bool], Awaitable[T]],
        *,
        budget_s: float | None = None,
    ) -> T:
        """Run ``attempt(endpoint, limit_s, maybe_applied)`` until one endpoint answers.

        ``maybe_applied`` tells a conditional write that an earlier attempt was sent and
        failed without an answer (it may have been applied). The loop is bounded by the
        budget: each round tries every endpoint once, then backs off.
        """
        budget = self.config.call_timeout_s if budget_s is None else budget_s
        deadline = self._clock() + budget
        failures: dict[str, str] = {}
        maybe_applied = False
        backoff = self._backoff()
        while not self._closed:
            for endpoint in self._rotation():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                if not await endpoint.ready(min(self.config.connect_timeout_s, remaining)):
                    failures[endpoint.address] = f"not connected ({endpoint.state()})"
                    continue
                limit_s = max(0.001, min(self.config.attempt_timeout_s, deadline - self._clock()))
                try:
                    result = await attempt(endpoint, limit_s, maybe_applied)
                except grpc.aio.AioRpcError as error:
                    code, details = error.code().name, error.details() or ""
                    failure = classify(code, details)
                    if failure is not Failure.TRANSIENT:
                        raise _refusal(operation, failure, code, details) from error
                    failures[endpoint.address] = f"{code} {details}".strip()
                    maybe_applied = True
                    continue
                except _StreamBroken as error:
                    failures[endpoint.address] = str(error)
                    maybe_applied = True
                    continue
                except asyncio.CancelledError:
                    if not _cancelled_by_close(self):
                        raise
                    break
                self._preferred = endpoint.index
                return result
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise EtcdUnavailable(operation, failures, budget)
            await asyncio.sleep(min(backoff.next_delay(), remaining))
        raise EtcdUnavailable(operation, {"adapter": "closed"}, budget)


def _refusal(operation: str, failure: Failure, code: str, details: str) -> EtcdError:
    if failure is Failure.LEASE_NOT_FOUND:
        return LeaseNotFound(f"{operation}: {details}")
    if failure is Failure.COMPACTED:
        return Compacted(0)  # etcd's message does not say up to where
    return EtcdError(f"{operation}: etcd refused it ({code}: {details})")


def _cancelled_by_close(client: EtcdClient) -> bool:
    """True if a CancelledError came from closing the client's channels (grpc.aio cancels
    pending calls with it), not from cancelling the task that made the call."""
    task = asyncio.current_task()
    return client.closed and (task is None or task.cancelling() == 0)


def _lease_id(lease: KeptLease | int | None) -> int:
    if lease is None:
        return 0
    return lease if isinstance(lease, int) else lease.id


class KeptLease:
    """A lease refreshed in the background every TTL/3 until revoked, abandoned or lost.

    ``lost`` is set (and :attr:`lost_reason` says why) when etcd reports the lease gone or
    no refresh succeeded before the TTL ran out; keys put under it are then gone or about
    to be. It is not re-granted: the owner grants a new lease and puts its keys again.
    """

    def __init__(self, client: EtcdClient, lease_id: int, ttl: int, granted_at: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self.last_error: str | None = None  # the latest failed refresh, for health/metrics
        self._client = client
        self._schedule = LeaseSchedule.granted(granted_at, ttl)
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._keep_alive(), name=f"etcd lease {lease_id:x}"
        )

    @property
    def expires_at(self) -> float:
        """Our conservative expiry on the client's clock (etcd's is no earlier)."""
        return self._schedule.expires_at

    async def revoke(self) -> None:
        """Stop refreshing and revoke: etcd deletes the lease's keys at once."""
        await self.abandon()
        await self._client._revoke_lease(self.id)

    async def abandon(self) -> None:
        """Stop refreshing without revoking: the keys expire with the TTL (as after a crash)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._client._forget(self)

    async def __aenter__(self) -> KeptLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.revoke()

    def _lose(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost.set()
        self._client._forget(self)

    async def _keep_alive(self) -> None:
        try:
            await self._refresh_until_lost()
        except Exception as error:  # a bug must not leave the owner believing it is kept
            self._lose(f"keepalive failed: {error!r}")
            raise

    async def _refresh_until_lost(self) -> None:
        clock = self._client._clock
        backoff = self._client._backoff()
        schedule = self._schedule
        while True:  # ends when the lease is lost, or by cancellation (revoke/abandon)
            await asyncio.sleep(max(0.0, schedule.next_refresh_at - clock()))
            sent_at = clock()
            if schedule.expired(sent_at):
                self._lose(f"not refreshed within its {self.ttl} s TTL: {self.last_error}")
                return
            budget = min(self._client.config.call_timeout_s, schedule.expires_at - sent_at)
            try:
                ttl = await self._client._refresh_lease(self.id, budget)
            except EtcdUnavailable as error:
                self.last_error = str(error)
                schedule.failed(clock(), backoff.next_delay())
                continue
            except EtcdError as error:
                self._lose(f"refresh refused: {error}")
                return
            if ttl <= 0:
                self._lose("expired in etcd")
                return
            self.last_error = None
            schedule.refreshed(sent_at, ttl)
            backoff.reset()


class PrefixWatch:
    """An endless, resuming iterator of :class:`WatchBatch` for one prefix.

    ``async for batch in etcd.watch_prefix(prefix, revision)``. While etcd is unreachable it
    keeps retrying (with backoff, rotating endpoints) until the caller stops iterating;
    :attr:`connected` and :attr:`last_error` tell health and metrics how it is doing.
    Raises :class:`Compacted` when the revision to resume from was compacted: the caller
    then resyncs (``get_prefix`` and a new watch from its ``revision + 1``).
    """

    def __init__(self, client: EtcdClient, prefix: bytes, start_revision: int) -> None:
        self.prefix = prefix
        self.connected = False
        self.endpoint: str | None = None  # the endpoint of the current stream
        self.reconnects = 0
        self.last_error: str | None = None
        self._client = client
        self._cursor = WatchCursor(start_revision)
        self._batches = self._run()

    @property
    def next_revision(self) -> int:
        """The revision the next event will have at least (where a resume starts)."""
        return self._cursor.next_revision

    def __aiter__(self) -> PrefixWatch:
        return self

    async def __anext__(self) -> WatchBatch:
        return await self._batches.__anext__()

    async def aclose(self) -> None:
        await self._batches.aclose()

    async def _run(self) -> AsyncGenerator[WatchBatch, None]:
        client = self._client
        backoff = client._backoff()
        index = client._preferred
        while not client.closed:  # bounded by the caller: it stops iterating or closes
            endpoint = next(client._rotation(index))
            try:
                async for batch in self._stream(endpoint):
                    backoff.reset()
                    yield batch
            except grpc.aio.AioRpcError as error:
                code, details = error.code().name, error.details() or ""
                failure = classify(code, details)
                if failure is not Failure.TRANSIENT and not client.closed:
                    raise _refusal(f"watch {self.prefix!r}", failure, code, details) from error
                self.last_error = f"{endpoint.address}: {code} {details}".strip()
            except (_StreamBroken, TimeoutError) as error:
                self.last_error = f"{endpoint.address}: {error or 'watch not created in time'}"
            except asyncio.CancelledError:
                if not _cancelled_by_close(client):
                    raise
                return
            finally:
                self.connected = False
                self.endpoint = None
            if client.closed:
                return
            index = endpoint.index + 1
            self.reconnects += 1
            await asyncio.sleep(backoff.next_delay())

    async def _stream(self, endpoint: _Endpoint) -> AsyncIterator[WatchBatch]:
        """One watch stream from the cursor; ends by raising when the stream breaks."""
        config = self._client.config
        if not await endpoint.ready(config.connect_timeout_s):
            raise _StreamBroken(f"not connected ({endpoint.state()})")
        call = endpoint.watch.Watch(metadata=_REQUIRE_LEADER)
        try:
            create = rpc_pb2.WatchCreateRequest(
                key=self.prefix,
                range_end=prefix_range_end(self.prefix),
                start_revision=self._cursor.next_revision,
                progress_notify=True,
            )
            await call.write(rpc_pb2.WatchRequest(create_request=create))
            async with asyncio.timeout(config.attempt_timeout_s):
                response = await call.read()
            while True:
                if response is grpc.aio.EOF:
                    raise _StreamBroken("watch stream ended")
                if response.compact_revision:
                    raise Compacted(int(response.compact_revision))
                if response.canceled:
                    raise _StreamBroken(f"watch canceled by etcd: {response.cancel_reason}")
                header_revision = int(response.header.revision)
                if response.created:
                    self._cursor.created(header_revision)
                    self.connected = True
                    self.endpoint = endpoint.address
                elif response.events:
                    batch = self._cursor.events([_watch_event(e) for e in response.events])
                    if batch is not None:
                        yield batch
                else:
                    progress = self._cursor.progress(header_revision)
                    if progress is not None:
                        yield progress
                response = await call.read()
        finally:
            call.cancel()
