"""What a fault test did to the cluster, and whether the cluster's answers were allowed.

A kill loop or a partition test drives real clients against real nodes and records every
operation here (invoked and completed on the recorder's monotonic clock, and the outcome). The
checks are pure functions of that record and of the state read at the end, so each is tested
on hand-made histories, including ones that must fail, without a server.

Versions of one device compare by ``(seq, tombstone over live)``, the first two fields of
:class:`client_sdk.protocol.records.Version` (the merge rule). An ``unknown`` write (timeout,
``UNAVAILABLE``, never completed) may land or not, even long after (a hint replayed): no check
reports a violation only because one is present or absent, but one may explain a newer version
or an absence. A ``failed`` write (refused) explains nothing. Lease ends are on the recorder's
clock (the harness converts the granted one); checks using them take a ``margin`` (skew).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, NewType, TypeVar

WriteKind = Literal["register", "unregister"]
WriteOutcome = Literal["ok", "failed", "unknown"]
ReadOutcome = Literal["ok", "failed"]
Consistency = Literal["one", "quorum"]
Key = tuple[str, str]  # (handle, device_id)
Observed = tuple[int, bool]  # (seq, tombstone), ordered as the merge rule orders them
WriteToken = NewType("WriteToken", int)
ReadToken = NewType("ReadToken", int)


@dataclass(frozen=True, slots=True)
class Write:
    """One register (a live version) or unregister (a tombstone) of one device."""

    index: int  # position in the history: names the operation in a violation
    handle: str
    device_id: str
    seq: int
    kind: WriteKind
    invoked_at: float
    completed_at: float = math.inf  # never completed (yet): may still land
    outcome: WriteOutcome = "unknown"
    expires_at: float | None = None  # the granted lease end; known once a register is acked

    @property
    def key(self) -> Key:
        return (self.handle, self.device_id)

    @property
    def version(self) -> Observed:
        return (self.seq, self.kind == "unregister")

    @property
    def may_apply(self) -> bool:
        """Whether the cluster may hold this write: everything but a refusal."""
        return self.outcome != "failed"

    def __str__(self) -> str:
        return (
            f"write#{self.index} {self.kind} {self.handle}/{self.device_id} seq={self.seq} "
            f"{self.outcome} [{self.invoked_at:.3f}..{self.completed_at:.3f}]"
        )


@dataclass(frozen=True, slots=True)
class Read:
    """One lookup of a handle: the live devices it returned, as ``{device_id: seq}``."""

    index: int
    handle: str
    client: str
    consistency: Consistency
    invoked_at: float
    completed_at: float = math.inf
    outcome: ReadOutcome = "failed"
    devices: Mapping[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"read#{self.index} {self.consistency} by {self.client} of {self.handle} "
            f"{self.outcome} [{self.invoked_at:.3f}..{self.completed_at:.3f}] "
            f"-> {dict(sorted(self.devices.items()))}"
        )


Operation = Write | Read
_Op = TypeVar("_Op", Write, Read)


class History:
    """Append-only record of a test's operations (one asyncio loop: no locking).

    ``invoke_*`` stamps the start and returns a token; ``complete*`` stamps the end. A call the
    test abandons stays open: a write then counts as ``unknown``, a read as returned nothing.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ops: list[Operation] = []
        self._open: set[int] = set()

    def invoke_write(self, handle: str, device_id: str, seq: int, kind: WriteKind) -> WriteToken:
        if kind not in ("register", "unregister"):
            raise ValueError(f"kind: {kind!r}, must be register or unregister")
        return WriteToken(self._append(Write(len(self._ops), handle, device_id, seq, kind, 0.0)))

    def complete(
        self, token: WriteToken, outcome: WriteOutcome, *, expires_at: float | None = None
    ) -> Write:
        """``expires_at``: the lease end the server granted, for a register it acknowledged."""
        write = self._opened(token, Write)
        if outcome not in ("ok", "failed", "unknown"):
            raise ValueError(f"outcome: {outcome!r}, must be ok, failed or unknown")
        if (expires_at is not None) != (write.kind == "register" and outcome == "ok"):
            raise ValueError(f"{write}: a granted lease end comes with an acked register only")
        return self._close(replace(write, outcome=outcome, expires_at=expires_at))

    def invoke_read(self, handle: str, consistency: Consistency, client: str) -> ReadToken:
        if consistency not in ("one", "quorum"):
            raise ValueError(f"consistency: {consistency!r}, must be one or quorum")
        return ReadToken(self._append(Read(len(self._ops), handle, client, consistency, 0.0)))

    def complete_read(
        self, token: ReadToken, outcome: ReadOutcome, devices: Mapping[str, int] | None = None
    ) -> Read:
        """``devices``: what an ``ok`` read returned (``{}``: no device); none when failed."""
        read = self._opened(token, Read)
        if outcome not in ("ok", "failed") or (outcome == "ok") != (devices is not None):
            raise ValueError(f"{read}: outcome {outcome!r} with devices {devices!r}")
        return self._close(replace(read, outcome=outcome, devices=dict(devices or {})))

    def _append(self, op: Operation) -> int:
        self._ops.append(replace(op, invoked_at=self._clock()))
        self._open.add(op.index)
        return op.index

    def _opened(self, token: int, kind: type[_Op]) -> _Op:
        op = self._ops[token] if 0 <= token < len(self._ops) else None
        if not isinstance(op, kind) or token not in self._open:
            raise ValueError(f"token {token} is not an open {kind.__name__.lower()}")
        return op

    def _close(self, op: _Op) -> _Op:
        done = replace(op, completed_at=self._clock())
        self._ops[op.index] = done
        self._open.discard(op.index)
        return done

    @property
    def writes(self) -> tuple[Write, ...]:
        return tuple(op for op in self._ops if isinstance(op, Write))

    @property
    def reads(self) -> tuple[Read, ...]:
        return tuple(op for op in self._ops if isinstance(op, Read))

    @property
    def unfinished(self) -> frozenset[int]:
        """Indexes of the operations invoked and never completed."""
        return frozenset(self._open)

    def ledger(self) -> list[Write]:
        """The acknowledged writes, in completion order: what the cluster promised to keep."""
        acked = [w for w in self.writes if w.outcome == "ok"]
        return sorted(acked, key=lambda w: (w.completed_at, w.index))


def _by_key(writes: Iterable[Write]) -> dict[Key, list[Write]]:
    grouped: dict[Key, list[Write]] = defaultdict(list)
    for write in writes:
        grouped[write.key].append(write)
    return grouped


def _surely_running(expires_at: float | None, at: float, margin: float) -> bool:
    return expires_at is not None and expires_at > at + margin


def _absence_excuse(writes: Iterable[Write], above: Observed, by: float, margin: float) -> bool:
    """Whether a write newer than ``above``, invoked by ``by``, may have left the device absent
    then: an unregister, or a register whose lease may have ended (or is not known)."""
    return any(
        w.may_apply
        and w.version > above
        and w.invoked_at <= by
        and (w.kind == "unregister" or not _surely_running(w.expires_at, by, margin))
        for w in writes
    )


def _strength(write: Write) -> tuple[Observed, float]:
    """The newest of several acknowledged writes; of equal versions, the longest lease."""
    return (write.version, -math.inf if write.expires_at is None else write.expires_at)


def _show(seen: Observed | None) -> str:
    if seen is None:
        return "nothing"
    return f"a tombstone at seq {seen[0]}" if seen[1] else f"live seq {seen[0]}"


def lost_writes(
    history: History, final_state: Mapping[Key, Observed], *, read_at: float, margin: float = 0.0
) -> list[str]:
    """Every acknowledged register whose lease outlives the final read is still there.

    ``final_state``: ``(handle, device_id) -> (seq, tombstone)`` as read at the end (every
    replica merged, or QUORUM), completed at ``read_at``. Each such register must be present
    at its version or a newer one, and a newer one must be one a recorded write (acknowledged
    or unknown) could have produced; it may be absent (or older) only if a newer write was
    invoked: an unregister, a register whose lease may have ended, or an acknowledged one that
    is then checked itself (so a missing device is reported once, at its newest write).

    Proves: no acknowledged, unexpired register was dropped or overwritten by a version nobody
    wrote. Does not prove: that nothing older came back (see :func:`resurrections`), nor
    anything about a device that was absent from the history.
    """
    writes = _by_key(history.writes)
    violations = []
    for write in history.ledger():
        if write.kind != "register" or not _surely_running(write.expires_at, read_at, margin):
            continue
        mine = writes[write.key]
        seen = final_state.get(write.key)
        if seen is not None and seen >= write.version:
            if seen != write.version and not any(w.may_apply and w.version == seen for w in mine):
                violations.append(f"phantom: {write} is acked; final has {_show(seen)}, unwritten")
        elif not any(w.may_apply and w.version > write.version for w in mine):
            violations.append(f"lost: {write} is acked, unexpired; final has {_show(seen)}")
    return violations


def resurrections(
    history: History,
    final_state: Mapping[Key, Observed],
    *,
    consistencies: Collection[str] = ("quorum",),
) -> list[str]:
    """No device comes back live at or below the seq of an acknowledged unregister of it.

    Checked in the final state and in every ``ok`` read (of the given consistencies) that was
    invoked after the unregister completed, unless a register of a higher seq was invoked
    before that read completed (then the tombstone is no longer the winner).

    ONE reads are left out by default: a replica that missed the unregister may answer one
    until a hint or the lease heals it (acknowledged at W=2 of 3), which the design allows.
    Proves: an acknowledged unregister is never undone by an old record (a replica that missed
    it, a hint replayed out of order, a tombstone collected too early). Does not prove: that
    the device is absent (a newer register may revive it legitimately).
    """
    writes = _by_key(history.writes)
    reads: defaultdict[str, list[Read]] = defaultdict(list)
    for read in sorted(history.reads, key=lambda r: r.invoked_at):
        if read.outcome == "ok" and read.consistency in consistencies:
            reads[read.handle].append(read)
    starts = {handle: [r.invoked_at for r in rs] for handle, rs in reads.items()}
    violations = []
    for gone in history.ledger():
        if gone.kind != "unregister":
            continue
        revivals = [
            w.invoked_at
            for w in writes[gone.key]
            if w.kind == "register" and w.may_apply and w.seq > gone.seq
        ]
        seen = final_state.get(gone.key)
        if seen is not None and not seen[1] and seen[0] <= gone.seq and not revivals:
            violations.append(f"resurrected: {gone} is acked; final has seq {seen[0]} live")
        after = bisect_right(starts.get(gone.handle, []), gone.completed_at)
        for read in reads[gone.handle][after:]:
            seq = read.devices.get(gone.device_id)
            if seq is not None and seq <= gone.seq and all(t > read.completed_at for t in revivals):
                violations.append(f"resurrected: {read} began after {gone} completed")
    return violations


def stale_quorum_reads(history: History, *, margin: float = 0.0) -> list[str]:
    """No QUORUM read is older than a write acknowledged before the read was invoked.

    Per device: the newest acknowledged write that completed before the read began is the
    floor; the read must return that version or a newer one. A read missing a device whose
    floor is a live register counts as stale when that lease surely outlives the read and no
    newer write (an unregister, or a register whose lease may have ended) was invoked before
    the read completed.

    Proves: the register/read pair is linearizable for acknowledged writes (W + R > RF, read
    repair picks the newest). Does not prove: anything about ONE reads, about writes that
    completed while the read ran (either answer is allowed), or that a newer version returned
    was ever written (see :func:`lost_writes`).
    """
    writes = _by_key(history.writes)
    acked = {
        key: sorted((w for w in ws if w.outcome == "ok"), key=lambda w: w.completed_at)
        for key, ws in writes.items()
    }
    ends = {key: [w.completed_at for w in ws] for key, ws in acked.items()}
    devices_of: dict[str, list[str]] = defaultdict(list)
    for handle, device_id in writes:
        devices_of[handle].append(device_id)
    violations = []
    for read in history.reads:
        if read.outcome != "ok" or read.consistency != "quorum":
            continue
        for device_id in devices_of[read.handle]:
            key = (read.handle, device_id)
            before = acked[key][: bisect_left(ends[key], read.invoked_at)]
            if not before:
                continue
            floor = max(before, key=_strength)
            seq = read.devices.get(device_id)
            if seq is not None:
                if (seq, False) < floor.version:
                    violations.append(f"stale: {read} is older than {floor}, acked before")
            elif (
                floor.kind == "register"
                and _surely_running(floor.expires_at, read.completed_at, margin)
                and not _absence_excuse(writes[key], floor.version, read.completed_at, margin)
            ):
                violations.append(f"stale: {read} misses {floor}, acked before, unexpired")
    return violations


def non_monotonic_reads(history: History) -> list[str]:
    """No client sees a device's seq go backwards, across all its reads in completion order.

    Absence is never a regression (a lease may end, a ONE replica may lag), but the newest seq
    a client was shown is remembered across it: a device reappearing lower is reported. This is
    the SDK's guarantee (``client_sdk.monotonic``: checked when a read is served, against every
    read served before, overlapping or not).

    Proves: no client is shown an older version than it saw before. Does not prove: that
    what it saw was current (see :func:`stale_quorum_reads`), nor anything across clients.
    """
    newest: dict[tuple[str, str, str], tuple[int, Read]] = {}
    violations = []
    done = sorted(
        (r for r in history.reads if r.outcome == "ok"), key=lambda r: (r.completed_at, r.index)
    )
    for read in done:
        for device_id, seq in sorted(read.devices.items()):
            key = (read.client, read.handle, device_id)
            shown = newest.get(key)
            if shown is not None and seq < shown[0]:
                violations.append(f"backwards: {read} after {shown[1]} ({device_id})")
            elif shown is None or seq > shown[0]:
                newest[key] = (seq, read)
    return violations


def summary(history: History) -> dict[str, float]:
    """Counts for a closing report: ``<kind>.<outcome>`` (open calls as ``pending``; reads as
    ``read.<consistency>.<outcome>``) and the lookup success rate (0.0 with none attempted, so
    a run that looked nothing up cannot pass a rate threshold)."""
    open_ = history.unfinished
    counts = Counter(
        f"{w.kind}.{'pending' if w.index in open_ else w.outcome}" for w in history.writes
    )
    counts.update(
        f"read.{r.consistency}.{'pending' if r.index in open_ else r.outcome}"
        for r in history.reads
    )
    attempted = len(history.reads)
    succeeded = sum(1 for r in history.reads if r.outcome == "ok")
    report: dict[str, float] = dict(sorted(counts.items()))
    report["reads.attempted"] = attempted
    report["reads.succeeded"] = succeeded
    report["reads.success_rate"] = succeeded / attempted if attempted else 0.0
    return report


def violations(
    history: History, final: Mapping[Key, Observed], *, read_at: float, margin: float = 1.0
) -> list[str]:
    """Every check the fault tests assert empty, over one history and the final state:
    lost writes, resurrections, stale QUORUM reads, reads going backwards."""
    return (
        lost_writes(history, final, read_at=read_at, margin=margin)
        + resurrections(history, final)
        + stale_quorum_reads(history, margin=margin)
        + non_monotonic_reads(history)
    )


def one_read_success(report: Mapping[str, float]) -> tuple[float, int]:
    """The share of SDK lookups at ONE that succeeded, and how many there were."""
    reads = report.get("read.one.ok", 0) + report.get("read.one.failed", 0)
    return report.get("read.one.ok", 0) / max(1, reads), int(reads)
