"""Presence watch: a change log with positions, and bounded per-watcher queues.

Pure state, no sockets and no event loop: the gRPC stream handler wraps it. Every presence
change gets the next revision of this node's epoch (a random id per process start) and is
kept in a bounded history, so a watcher that reconnects with its last position receives
exactly what it missed, or, when that position is older than the history or from another
epoch, is told to take a fresh snapshot. Nothing is ever silently skipped.

Snapshot consistency: the server runs on one event loop and takes the snapshot in the
same step as :meth:`WatchHub.subscribe`, so no change falls between the two.

Bounds, all in bytes as well as in events (one record may be 50 KB): each watcher's queue
(``queue_bytes``), all watchers' queues together (``node_queue_bytes``) and the history
(``history_bytes``). A watcher over its bound, or whose oldest waiting event is older than
``stall_seconds`` (checked on each new event and by :meth:`WatchHub.sweep`), is cut off:
its queue is dropped and its ``cut`` callback runs, so the stream ends even when its
handler is stuck writing to a client that stopped reading. It resumes from its position.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from supernode.directory.presence import Change, DeviceChanged
from supernode.errors import InvalidArgument, Reason, ResourceExhausted

# Recent changes remembered to drop the copies other replicas send (about 100 bytes each).
_SEEN_LIMIT = 100_000
# What an event costs beyond its record: the object, its strings, the queue's slot.
_EVENT_OVERHEAD_BYTES = 200


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    revision: int
    handle: str
    device_id: str
    change: Change
    device: bytes | None  # serialized Device for ONLINE and UPDATED
    committed_at: float  # monotonic seconds, for the notification-delay histogram

    @property
    def size(self) -> int:
        """Bytes the event holds, roughly (what the queue and history bounds count)."""
        return (
            _EVENT_OVERHEAD_BYTES
            + len(self.handle)
            + len(self.device_id)
            + (len(self.device) if self.device else 0)
        )


@dataclass
class QueueBounds:
    """The limits every watcher's queue is held to, and what all of them hold now."""

    events: int
    bytes: int
    node_bytes: int
    stall_seconds: float
    queued_bytes: int = 0  # all watchers' queues together


@dataclass(eq=False)
class Subscription:
    """One watch stream's view of the hub. ``wake`` is called when there is news."""

    session_id: bytes
    handles: frozenset[str]
    wake: Callable[[], None]
    bounds: QueueBounds
    cut: Callable[[], None] = lambda: None  # frees a stream perhaps stuck writing (rpc.watch)
    pending: deque[ChangeEvent] = field(default_factory=deque)
    pending_bytes: int = 0
    overflowed: bool = False
    closed: bool = False
    interrupted: str = ""  # why the stream must end and resume (a lost cluster feed)

    def offer(self, event: ChangeEvent, now: float) -> None:
        if self.overflowed or self.closed:
            return
        bounds = self.bounds
        size = event.size
        if (
            len(self.pending) >= bounds.events
            or self.pending_bytes + size > bounds.bytes
            or bounds.queued_bytes + size > bounds.node_bytes
            or self.stalled(now)
        ):
            # The consumer fell behind: cut it off instead of buffering without bound.
            self.overflow()
            return
        self.pending.append(event)
        self.pending_bytes += size
        bounds.queued_bytes += size
        self.wake()

    def stalled(self, now: float) -> bool:
        """Whether the oldest waiting event has waited longer than the bound."""
        return bool(self.pending) and now - self.pending[0].committed_at > self.bounds.stall_seconds

    def overflow(self) -> None:
        self.overflowed = True
        self._forget()
        self.wake()
        self.cut()

    def drain(self) -> list[ChangeEvent]:
        events = list(self.pending)
        self._forget()
        return events

    def _forget(self) -> None:
        self.pending.clear()
        self.bounds.queued_bytes -= self.pending_bytes
        self.pending_bytes = 0


@dataclass(frozen=True, slots=True)
class Start:
    """How a new watch stream begins: a gapless resumption with its backlog, or a snapshot."""

    subscription: Subscription
    resumed: bool
    backlog: list[ChangeEvent]
    revision: int  # the position the stream starts from


class WatchHub:
    """The node's change log and its watchers. Implements ``PresenceObserver``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        history: int,
        queue_limit: int,
        max_handles: int,
        max_watches_per_session: int,
        epoch: str | None = None,
        history_bytes: int = 64 << 20,
        queue_bytes: int = 1 << 20,
        node_queue_bytes: int = 256 << 20,
        stall_seconds: float = 30.0,
    ) -> None:
        self.epoch = epoch or secrets.token_hex(8)
        self.revision = 0
        self._clock = clock
        self._history: deque[ChangeEvent] = deque(maxlen=history)
        self._history_bytes_limit = history_bytes
        self.history_bytes = 0
        self.bounds = QueueBounds(queue_limit, queue_bytes, node_queue_bytes, stall_seconds)
        self._max_handles = max_handles
        self._max_watches = max_watches_per_session
        self._by_handle: dict[str, set[Subscription]] = {}
        self._by_session: dict[bytes, set[Subscription]] = {}
        self._seen: OrderedDict[tuple[str, str, int, bool], None] = OrderedDict()
        # handle -> the revision at which its account state (privacy, key) last changed:
        # a watch of it cannot resume from before that (see account_changed).
        self._account_changes: dict[str, int] = {}
        self.closed = False

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._by_session.values())

    def device_changed(self, changed: DeviceChanged) -> None:
        if changed.change is Change.RENEWED:  # nothing a watcher sees: not an event
            return
        if changed.seq and self._seen_before(changed):
            return
        self.revision += 1
        event = ChangeEvent(
            self.revision,
            changed.handle,
            changed.device_id,
            changed.change,
            changed.device,
            self._clock(),
        )
        self._remember(event)
        now = event.committed_at
        for subscription in list(self._by_handle.get(changed.handle, ())):
            subscription.offer(event, now)

    def _remember(self, event: ChangeEvent) -> None:
        """Keep ``event`` in the history, forgetting the oldest past either bound."""
        history = self._history
        if len(history) == history.maxlen:
            self.history_bytes -= history[0].size  # append drops it
        history.append(event)
        self.history_bytes += event.size
        while self.history_bytes > self._history_bytes_limit and len(history) > 1:
            self.history_bytes -= history.popleft().size

    def sweep(self) -> int:
        """Cut off watchers whose oldest waiting event waited too long (they may get no
        new event to notice it on); returns how many."""
        now = self._clock()
        stalled = [
            s
            for subscriptions in self._by_session.values()
            for s in subscriptions
            if s.pending and s.stalled(now)
        ]
        for subscription in stalled:
            subscription.overflow()
        return len(stalled)

    def account_changed(self, handle: str) -> None:
        """An account's privacy settings or key changed: what each of its watchers may see
        of it may have changed. Every watch of it ends (UNAVAILABLE, "resume to resync"),
        and resuming from before the change gets a fresh snapshot instead of a backlog, so
        each watcher's view becomes what it may see now: a newly refused watcher sees the
        account's devices go (in the SDK, a snapshot's ``gap_changes``), a newly admitted
        one sees them come. Rare (a person changing a setting), so ending streams is cheap.
        """
        self.revision += 1  # positions up to now are from before the change
        self._account_changes[handle] = self.revision
        if len(self._account_changes) > _SEEN_LIMIT:  # older than any resumable position
            oldest = self._history[0].revision if self._history else self.revision
            self._account_changes = {h: r for h, r in self._account_changes.items() if r >= oldest}
        for subscription in list(self._by_handle.get(handle, ())):
            subscription.interrupted = "the privacy settings of a watched account changed"
            subscription.wake()

    def _seen_before(self, changed: DeviceChanged) -> bool:
        """Replicas each commit the same change, and this hub hears of it from each: tell
        watchers once per (handle, device, seq, live or not). Which replica's word came
        first decides ONLINE vs UPDATED and UNREGISTERED vs EXPIRED."""
        key = (changed.handle, changed.device_id, changed.seq, changed.device is not None)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        return False

    def subscribe(
        self,
        session_id: bytes,
        handles: Iterable[str],
        wake: Callable[[], None],
        *,
        epoch: str = "",
        revision: int = 0,
        cut: Callable[[], None] = lambda: None,
    ) -> Start:
        wanted = frozenset(handles)
        if not wanted:
            raise InvalidArgument("handles: at least one handle to watch")
        if len(wanted) > self._max_handles:
            raise InvalidArgument(
                f"handles: {len(wanted)} given, at most {self._max_handles} per watch"
            )
        mine = self._by_session.setdefault(session_id, set())
        if len(mine) >= self._max_watches:
            raise ResourceExhausted(
                f"watch: this session already has {len(mine)} watches, at most {self._max_watches}",
                reason=Reason.WATCH_LIMIT,
            )
        subscription = Subscription(session_id, wanted, wake, self.bounds, cut)
        mine.add(subscription)
        for handle in wanted:
            self._by_handle.setdefault(handle, set()).add(subscription)
        if self._holds(epoch, revision) and not any(
            self._account_changes.get(handle, 0) > revision for handle in wanted
        ):
            backlog = [e for e in self._history if e.revision > revision and e.handle in wanted]
            return Start(subscription, True, backlog, revision)
        return Start(subscription, False, [], self.revision)

    def _holds(self, epoch: str, revision: int) -> bool:
        """Whether every change after ``revision`` of ``epoch`` is still in the history."""
        if epoch != self.epoch or revision > self.revision:
            return False
        oldest = self._history[0].revision if self._history else self.revision + 1
        return revision >= oldest - 1

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        subscription.drain()
        for handle in subscription.handles:
            watchers = self._by_handle.get(handle)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._by_handle[handle]
        mine = self._by_session.get(subscription.session_id)
        if mine is not None:
            mine.discard(subscription)
            if not mine:
                del self._by_session[subscription.session_id]

    def interrupt(self, reason: str) -> None:
        """Changes may have been missed (a cluster feed broke): start a new epoch, so no
        position of the old one resumes, and end every watch so each takes a snapshot."""
        self.epoch = secrets.token_hex(8)
        self._history.clear()
        self.history_bytes = 0
        for subscriptions in list(self._by_session.values()):
            for subscription in list(subscriptions):
                subscription.interrupted = reason
                subscription.wake()

    def close(self) -> None:
        """Shutting down: wake every watcher so its stream can end with UNAVAILABLE."""
        self.closed = True
        for subscriptions in list(self._by_session.values()):
            for subscription in list(subscriptions):
                subscription.wake()
