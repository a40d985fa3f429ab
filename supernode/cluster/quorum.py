"""Quorum arithmetic for replicated presence: pure, no I/O, no clock.

A coordinator sends one admitted write to every replica of the handle's partition and
feeds each reply into a :class:`QuorumWrite`, which says when the call is decided:
acknowledged once ``w`` replicas hold the write (applied now, or already held it or a newer
version), refused once so many replicas refused it on the client's account (the replay rule,
the device cap) that ``w`` acknowledgements are out of reach, unavailable once too many
replicas could not be reached. Replies after the decision still count: every replica that
was not reached needs a hint.

:func:`merge_reads` is read repair's core: versions of a handle's devices as several
replicas hold them in, the winners (by the merge rule) and what each replica lacks out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from client_sdk.protocol.records import supersedes
from supernode.directory.presence import DeviceWrite


class Reply(enum.Enum):
    APPLIED = "applied"  # the replica stored the write
    HELD = "held"  # the replica already held it or a newer version (merge no-op)
    REFUSED = "refused"  # the replica refused it for the client's fault (replay, cap)
    UNREACHABLE = "unreachable"  # no answer: down, partitioned, timed out
    STALE = "stale"  # routed by an older placement than the replica's: route again


class Decision(enum.Enum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"


@dataclass
class QuorumWrite:
    """One write's replies. ``moving_to``: while the partition moves, the replica set it
    moves to; the write is then sent to both sets and acknowledged once each holds ``w``
    (or all of a smaller set), so whichever set reads after the flip finds it."""

    replicas: tuple[str, ...]
    w: int
    moving_to: tuple[str, ...] = ()
    replies: dict[str, Reply] = field(default_factory=dict)
    refusal: Exception | None = None  # the first replica's reason, for the client

    def __post_init__(self) -> None:
        for nodes in (self.replicas, self.moving_to):
            if len(set(nodes)) != len(nodes):
                raise ValueError(f"replicas: {nodes!r}, need distinct nodes")
        if not self.replicas:
            raise ValueError("replicas: empty, need at least one node")
        if not 1 <= self.w <= len(self.replicas):
            raise ValueError(f"w: {self.w}, must be 1-{len(self.replicas)}")
        self._sets = (self.replicas, self.moving_to) if self.moving_to else (self.replicas,)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every node the write goes to: the replicas, then the nodes the move adds."""
        return self.replicas + tuple(n for n in self.moving_to if n not in self.replicas)

    def record(self, node: str, reply: Reply, error: Exception | None = None) -> Decision:
        if node not in self.replicas and node not in self.moving_to:
            raise ValueError(f"{node} is not a replica of this write")
        if node not in self.replies:  # the first reply of a replica is the one that counts
            self.replies[node] = reply
            if reply is Reply.REFUSED and self.refusal is None:
                self.refusal = error
        return self.decision

    def _count(self, nodes: tuple[str, ...], *kinds: Reply) -> int:
        return sum(1 for node in nodes if self.replies.get(node) in kinds)

    @property
    def acknowledgements(self) -> int:
        """Replicas (of either set) that hold the write."""
        return self._count(self.targets, Reply.APPLIED, Reply.HELD)

    @property
    def decision(self) -> Decision:
        reachable = True
        for nodes in self._sets:
            need = min(self.w, len(nodes))
            acks = self._count(nodes, Reply.APPLIED, Reply.HELD)
            if acks >= need:
                continue
            waiting = sum(1 for node in nodes if node not in self.replies)
            if acks + waiting < need:
                reachable = False
                break
        if reachable:
            if all(
                self._count(nodes, Reply.APPLIED, Reply.HELD) >= min(self.w, len(nodes))
                for nodes in self._sets
            ):
                return Decision.ACKNOWLEDGED
            return Decision.PENDING
        # Out of reach: refused when a replica said why, else nobody could be asked.
        refused = self._count(self.targets, Reply.REFUSED)
        return Decision.REFUSED if refused else Decision.UNAVAILABLE

    def timed_out(self) -> None:
        """The deadline passed: every replica that has not answered is unreachable."""
        for node in self.targets:
            self.replies.setdefault(node, Reply.UNREACHABLE)

    @property
    def need_hints(self) -> list[str]:
        """Replicas that did not get the write and must get it later (hinted handoff)."""
        return [n for n in self.targets if self.replies.get(n) is Reply.UNREACHABLE]

    @property
    def stale(self) -> bool:
        """Some replica refused the write as routed by an older placement than its own."""
        return any(reply is Reply.STALE for reply in self.replies.values())


@dataclass(frozen=True)
class MergedRead:
    winners: dict[str, DeviceWrite]  # device id -> the winning version (tombstones included)
    repairs: dict[str, list[DeviceWrite]]  # replica -> versions it lacks


def merge_reads(held: Mapping[str, Iterable[DeviceWrite]]) -> MergedRead:
    """``held``: replica -> the versions it stores for one handle (tombstones too)."""
    winners: dict[str, DeviceWrite] = {}
    by_replica: dict[str, dict[str, DeviceWrite]] = {}
    for node, versions in held.items():
        mine = by_replica.setdefault(node, {})
        for version in versions:
            mine[version.device_id] = version
            best = winners.get(version.device_id)
            if supersedes(version.version, None if best is None else best.version):
                winners[version.device_id] = version
    repairs: dict[str, list[DeviceWrite]] = {}
    for node, mine in by_replica.items():
        lacking = [
            winner
            for device_id, winner in sorted(winners.items())
            if mine.get(device_id) is None or mine[device_id].version < winner.version
        ]
        if lacking:
            repairs[node] = lacking
    return MergedRead(winners, repairs)


def live(winners: Mapping[str, DeviceWrite], now_ms: int) -> Sequence[DeviceWrite]:
    """The winners a lookup serves: live records whose lease has not ended, by device id."""
    return [w for _, w in sorted(winners.items()) if not w.tombstone and w.expires_at_ms > now_ms]
