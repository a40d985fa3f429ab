"""The fault tests' history checker: hand-made histories that pass and that must fail, and a
simulated linearizable single copy whose histories never report a violation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.protocol.records import Version, supersedes
from tests.cluster.history import (
    Consistency,
    History,
    Key,
    Observed,
    Read,
    ReadToken,
    Write,
    WriteKind,
    WriteOutcome,
    WriteToken,
    lost_writes,
    non_monotonic_reads,
    resurrections,
    stale_quorum_reads,
    summary,
)

PHONE = ("alice", "phone")


class Clock:
    """The recorder's clock, set by hand: each operation is stamped where the test puts it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Script:
    """Builds a history from (start, end) windows; operations may overlap freely."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.history = History(self.clock)

    def write(
        self,
        kind: WriteKind,
        seq: int,
        window: tuple[float, float],
        outcome: WriteOutcome = "ok",
        expires_at: float | None = None,
        key: Key = PHONE,
    ) -> Write:
        if kind == "register" and outcome == "ok" and expires_at is None:
            expires_at = window[1] + 100.0
        self.clock.now = window[0]
        token = self.history.invoke_write(key[0], key[1], seq, kind)
        self.clock.now = window[1]
        return self.history.complete(token, outcome, expires_at=expires_at)

    def register(
        self,
        seq: int,
        window: tuple[float, float],
        outcome: WriteOutcome = "ok",
        expires_at: float | None = None,
    ) -> Write:
        return self.write("register", seq, window, outcome, expires_at)

    def unregister(
        self, seq: int, window: tuple[float, float], outcome: WriteOutcome = "ok"
    ) -> Write:
        return self.write("unregister", seq, window, outcome)

    def read(
        self,
        devices: Mapping[str, int] | None,
        window: tuple[float, float],
        consistency: Consistency = "quorum",
        client: str = "c1",
        handle: str = "alice",
    ) -> Read:
        self.clock.now = window[0]
        token = self.history.invoke_read(handle, consistency, client)
        self.clock.now = window[1]
        return self.history.complete_read(token, "ok" if devices is not None else "failed", devices)

    def lost(self, final: Mapping[Key, Observed], read_at: float = 50.0) -> list[str]:
        return lost_writes(self.history, final, read_at=read_at)


# The recorder.


def test_the_ledger_holds_acknowledged_writes_in_completion_order() -> None:
    s = Script()
    late = s.register(1, (0, 5))
    s.register(2, (1, 2), outcome="failed")
    early = s.unregister(1, (1, 3))
    s.clock.now = 4
    open_token = s.history.invoke_write("alice", "laptop", 1, "register")
    assert s.history.ledger() == [early, late]
    (pending,) = (w for w in s.history.writes if w.index == open_token)
    assert pending.outcome == "unknown" and pending.completed_at == float("inf")
    with pytest.raises(ValueError, match="acked register only"):
        s.history.complete(open_token, "ok")
    with pytest.raises(ValueError, match="acked register only"):
        s.history.complete(open_token, "failed", expires_at=9.0)
    with pytest.raises(ValueError, match="acked register only"):
        s.history.complete(s.history.invoke_write("a", "b", 1, "unregister"), "ok", expires_at=9.0)
    with pytest.raises(ValueError, match="not an open read"):
        s.history.complete_read(open_token, "ok", {})  # type: ignore[arg-type]


def test_a_completed_write_cannot_complete_again() -> None:
    s = Script()
    done = s.register(1, (0, 1))
    with pytest.raises(ValueError, match="not an open write"):
        s.history.complete(done.index, "failed")  # type: ignore[arg-type]


def test_a_failed_read_returns_nothing_and_an_ok_read_says_what_it_returned() -> None:
    s = Script()
    token = s.history.invoke_read("alice", "one", "c1")
    with pytest.raises(ValueError):
        s.history.complete_read(token, "failed", {"phone": 1})
    with pytest.raises(ValueError):
        s.history.complete_read(token, "ok")


# 1. Lost writes.


def test_an_acknowledged_register_present_at_its_seq_is_not_lost() -> None:
    s = Script()
    s.register(3, (0, 1))
    assert s.lost({PHONE: (3, False)}) == []


def test_an_acknowledged_register_missing_at_the_end_is_lost() -> None:
    s = Script()
    write = s.register(3, (0, 1))
    (violation,) = s.lost({})
    assert violation.startswith("lost:") and f"write#{write.index}" in violation


def test_an_acknowledged_register_found_at_a_lower_seq_is_lost() -> None:
    s = Script()
    s.register(2, (0, 1))
    s.register(3, (2, 3))
    (violation,) = s.lost({PHONE: (2, False)})
    assert "seq=3" in violation


def test_an_expired_lease_may_be_absent() -> None:
    s = Script()
    s.register(3, (0, 1), expires_at=40.0)
    assert s.lost({}, read_at=50.0) == []
    assert s.lost({}, read_at=39.0) != []
    assert lost_writes(s.history, {}, read_at=39.0, margin=2.0) == []  # may have ended: skew


def test_after_an_acknowledged_unregister_absence_or_its_tombstone_is_correct() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3))
    assert s.lost({}) == []
    assert s.lost({PHONE: (3, True)}) == []


def test_a_tombstone_nobody_wrote_does_not_excuse_a_missing_register() -> None:
    s = Script()
    s.register(3, (0, 1))
    (violation,) = s.lost({PHONE: (3, True)})
    assert violation.startswith("phantom:")
    s.unregister(3, (2, 3), outcome="failed")  # refused: definitely not applied
    assert s.lost({PHONE: (3, True)}) != []
    assert s.lost({PHONE: (4, False)}) != []


def test_an_unknown_unregister_or_register_may_be_applied_or_not() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3), outcome="unknown")
    s.register(4, (4, 5), outcome="unknown")
    for final in ({PHONE: (3, False)}, {PHONE: (3, True)}, {PHONE: (4, False)}, {}):
        assert s.lost(final) == [], final


def test_a_newer_acknowledged_register_that_is_missing_is_reported_once_as_itself() -> None:
    s = Script()
    s.register(3, (0, 1))
    newer = s.register(4, (2, 3))
    (violation,) = s.lost({})
    assert f"write#{newer.index}" in violation


# 2. Resurrections.


def test_an_unregistered_device_live_again_at_the_end_is_a_resurrection() -> None:
    s = Script()
    s.register(3, (0, 1))
    gone = s.unregister(3, (2, 3))
    (violation,) = resurrections(s.history, {PHONE: (3, False)})
    assert violation.startswith("resurrected:") and f"write#{gone.index}" in violation
    assert resurrections(s.history, {PHONE: (2, False)}) != []
    assert resurrections(s.history, {PHONE: (3, True)}) == []
    assert resurrections(s.history, {}) == []


def test_a_quorum_read_that_began_after_the_unregister_must_not_show_the_device() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3))
    s.read({"phone": 3}, (2.5, 4))  # overlapped the unregister: either answer is allowed
    assert resurrections(s.history, {}) == []
    back = s.read({"phone": 3}, (4, 5))
    (violation,) = resurrections(s.history, {})
    assert f"read#{back.index}" in violation


def test_one_reads_may_lag_an_unregister_unless_the_test_asks_for_them() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3))
    s.read({"phone": 3}, (4, 5), consistency="one")
    assert resurrections(s.history, {}) == []
    assert resurrections(s.history, {}, consistencies=("one", "quorum")) != []


def test_a_register_of_a_higher_seq_revives_the_device() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3))
    s.register(4, (4, 5), outcome="unknown")
    s.read({"phone": 4}, (6, 7))
    assert resurrections(s.history, {PHONE: (4, False)}) == []


def test_a_revival_invoked_after_the_read_does_not_excuse_it() -> None:
    s = Script()
    s.unregister(3, (2, 3))
    s.read({"phone": 3}, (4, 5))
    s.register(4, (6, 7))
    assert resurrections(s.history, {}) != []


# 3. Stale QUORUM reads.


def test_a_quorum_read_older_than_a_write_acknowledged_before_it_began_is_stale() -> None:
    s = Script()
    s.register(3, (0, 1))
    acked = s.register(4, (2, 3))
    read = s.read({"phone": 3}, (4, 5))
    (violation,) = stale_quorum_reads(s.history)
    assert f"read#{read.index}" in violation and f"write#{acked.index}" in violation


def test_a_read_overlapping_the_write_may_return_the_older_version() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.register(4, (2, 5))
    s.read({"phone": 3}, (4, 6))  # began before the write completed
    s.read({}, (0.5, 6))  # began before the first write completed
    assert stale_quorum_reads(s.history) == []


def test_one_reads_are_not_held_to_quorum_freshness() -> None:
    s = Script()
    s.register(4, (2, 3))
    s.read({}, (4, 5), consistency="one")
    assert stale_quorum_reads(s.history) == []


def test_a_quorum_read_missing_an_unexpired_acknowledged_register_is_stale() -> None:
    s = Script()
    s.register(3, (0, 1), expires_at=10.0)
    s.read({}, (4, 5))
    assert len(stale_quorum_reads(s.history)) == 1
    s.read({}, (9, 11))  # the lease may have ended while it ran
    s.read({}, (4, 8.5))  # may have ended, given the margin
    assert len(stale_quorum_reads(s.history, margin=2.0)) == 1


def test_an_unregister_invoked_before_the_read_completed_explains_a_miss() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (4.5, 20), outcome="unknown")
    s.read({}, (4, 5))
    assert stale_quorum_reads(s.history) == []
    s.read({}, (2, 4))  # completed before the unregister was invoked
    assert len(stale_quorum_reads(s.history)) == 1


def test_a_quorum_read_showing_a_device_live_after_its_acknowledged_tombstone_is_stale() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.unregister(3, (2, 3))
    s.read({"phone": 3}, (4, 5))
    assert len(stale_quorum_reads(s.history)) == 1


def test_unknown_writes_present_or_absent_are_never_stale() -> None:
    s = Script()
    s.register(3, (0, 1))
    s.register(4, (2, 3), outcome="unknown")
    s.read({"phone": 4}, (4, 5))
    s.read({"phone": 3}, (6, 7))
    s.unregister(5, (8, 9), outcome="unknown")
    s.read({"phone": 4}, (10, 11))
    s.read({}, (12, 13))
    assert stale_quorum_reads(s.history) == []


# 4. Monotonic reads per client.


def test_a_client_reading_a_device_at_a_lower_seq_goes_backwards() -> None:
    s = Script()
    first = s.read({"phone": 5}, (0, 1), consistency="one")
    second = s.read({"phone": 4}, (2, 3), consistency="one")
    (violation,) = non_monotonic_reads(s.history)
    assert f"read#{second.index}" in violation and f"read#{first.index}" in violation


def test_a_device_disappearing_then_reappearing_lower_goes_backwards() -> None:
    s = Script()
    s.read({"phone": 5}, (0, 1), consistency="one")
    s.read({}, (2, 3), consistency="one")
    s.read({"phone": 4}, (4, 5), consistency="one")
    assert len(non_monotonic_reads(s.history)) == 1


def test_absent_after_an_unregister_then_newer_is_monotonic() -> None:
    s = Script()
    s.read({"phone": 5}, (0, 1))
    s.unregister(5, (1, 2))
    s.read({}, (2, 3))
    s.read({"phone": 6}, (4, 5))
    s.read({"phone": 6, "laptop": 1}, (6, 7))
    assert non_monotonic_reads(s.history) == []


def test_each_client_and_each_handle_has_its_own_order() -> None:
    s = Script()
    s.read({"phone": 5}, (0, 1), client="c1")
    s.read({"phone": 4}, (2, 3), client="c2")
    s.read({"phone": 4}, (2, 3), client="c1", handle="bob")
    assert non_monotonic_reads(s.history) == []


def test_overlapping_reads_of_one_client_compare_in_completion_order() -> None:
    s = Script()
    s.read({"phone": 4}, (0, 10))  # served last
    s.read({"phone": 5}, (1, 2))
    assert len(non_monotonic_reads(s.history)) == 1


# The summary.


def test_the_summary_counts_every_outcome_and_the_lookup_success_rate() -> None:
    s = Script()
    assert summary(s.history)["reads.success_rate"] == 0.0  # nothing looked up: cannot pass
    s.register(1, (0, 1))
    s.register(2, (0, 1), outcome="unknown")
    s.unregister(2, (0, 1), outcome="failed")
    s.history.invoke_write("alice", "phone", 3, "register")
    s.read({}, (0, 1))
    s.read({}, (0, 1), consistency="one")
    s.read(None, (0, 1))
    s.history.invoke_read("alice", "quorum", "c1")
    report = summary(s.history)
    assert report == {
        "read.one.ok": 1,
        "read.quorum.failed": 1,
        "read.quorum.ok": 1,
        "read.quorum.pending": 1,
        "register.ok": 1,
        "register.pending": 1,
        "register.unknown": 1,
        "unregister.failed": 1,
        "reads.attempted": 4,
        "reads.succeeded": 2,
        "reads.success_rate": 0.5,
    }


# The law: a linearizable single copy never reports a violation.

KEYS: tuple[Key, ...] = (("alice", "phone"), ("alice", "laptop"), ("bob", "phone"))
CLIENTS = ("c1", "c2", "c3")
END = 360
KINDS: list[WriteKind] = ["register", "register", "unregister"]
OUTCOMES: list[WriteOutcome] = ["ok", "ok", "failed", "unknown"]
CONSISTENCIES: list[Consistency] = ["one", "quorum"]


@dataclass(frozen=True)
class Planned:
    """One operation of the simulation: its window, and when the single copy applied it."""

    start: int
    end: int | None  # None: never completed
    applied: int | None  # writes: None = never applied; reads: the instant read
    write: tuple[Key, int, WriteKind, WriteOutcome, int] | None  # key, seq, kind, outcome, ttl
    read: tuple[str, str, Consistency, bool] | None  # handle, client, consistency, ok


@st.composite
def planned_writes(draw: st.DrawFn) -> list[Planned]:
    seqs = dict.fromkeys(KEYS, 0)
    plans = []
    for _ in range(draw(st.integers(0, 25))):
        key = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from(KINDS))
        if kind == "register" and (seqs[key] == 0 or draw(st.booleans())):
            seqs[key] += 1  # else a retry of the same seq (another lease end)
        seqs[key] = max(seqs[key], 1)
        outcome = draw(st.sampled_from(OUTCOMES))
        start = draw(st.integers(0, 200))
        end = start + draw(st.integers(0, 30))
        applied = None
        if outcome == "ok":
            applied = draw(st.integers(start, end))
        elif outcome == "unknown" and draw(st.booleans()):
            applied = draw(st.integers(start, start + 150))  # late: a hint replayed
        abandoned = outcome == "unknown" and draw(st.booleans())
        write = (key, seqs[key], kind, outcome, draw(st.integers(1, 300)))
        plans.append(Planned(start, None if abandoned else end, applied, write, None))
    return plans


@st.composite
def planned_reads(draw: st.DrawFn) -> list[Planned]:
    """Each client reads one after another, as a client loop does."""
    plans = []
    for client in CLIENTS:
        at = draw(st.integers(0, 20))
        for _ in range(draw(st.integers(0, 8))):
            start, end = at, at + draw(st.integers(0, 30))
            handle = draw(st.sampled_from(["alice", "bob"]))
            consistency = draw(st.sampled_from(CONSISTENCIES))
            ok = draw(st.integers(0, 9)) > 0
            plans.append(
                Planned(
                    start,
                    end,
                    draw(st.integers(start, end)),
                    None,
                    (handle, client, consistency, ok),
                )
            )
            at = end + 1 + draw(st.integers(0, 20))
    return plans


def single_copy_at(writes: list[Planned], instant: int) -> dict[Key, Version]:
    """The one copy at ``instant``: every write applied by then, by the real merge rule."""
    state: dict[Key, Version] = {}
    for plan in sorted(writes, key=lambda p: p.applied or 0):
        if plan.applied is None or plan.applied > instant or plan.write is None:
            continue
        key, seq, kind, _, ttl = plan.write
        version = Version(seq, kind == "unregister", plan.applied + ttl)
        if supersedes(version, state.get(key)):
            state[key] = version
    return state


def visible(state: Mapping[Key, Version], instant: int) -> dict[Key, Version]:
    return {k: v for k, v in state.items() if v.tombstone or v.expires_at_ms > instant}


def record(writes: list[Planned], reads: list[Planned]) -> History:
    """Replays the plan through the recorder in time order (invokes before completions)."""
    clock = Clock()
    history = History(clock)
    plans = writes + reads
    events = [(plan.start, 0, n) for n, plan in enumerate(plans)]
    events += [(plan.end, 1, n) for n, plan in enumerate(plans) if plan.end is not None]
    write_tokens: dict[int, WriteToken] = {}
    read_tokens: dict[int, ReadToken] = {}
    for time, phase, n in sorted(events):
        clock.now = float(time)
        plan = plans[n]
        if plan.write is not None:
            key, seq, kind, outcome, ttl = plan.write
            if phase == 0:
                write_tokens[n] = history.invoke_write(key[0], key[1], seq, kind)
                continue
            granted = None
            if outcome == "ok" and kind == "register" and plan.applied is not None:
                granted = float(plan.applied + ttl)  # what the response tells the client
            history.complete(write_tokens[n], outcome, expires_at=granted)
        elif plan.read is not None:
            handle, client, consistency, ok = plan.read
            if phase == 0:
                read_tokens[n] = history.invoke_read(handle, consistency, client)
                continue
            assert plan.applied is not None
            state = visible(single_copy_at(writes, plan.applied), plan.applied)
            devices = {k[1]: v.seq for k, v in state.items() if k[0] == handle and not v.tombstone}
            history.complete_read(read_tokens[n], "ok" if ok else "failed", devices if ok else None)
    return history


@settings(max_examples=300, deadline=None)
@given(planned_writes(), planned_reads(), st.booleans())
def test_a_linearizable_single_copy_never_reports_a_violation(
    writes: list[Planned], reads: list[Planned], tombstones_collected: bool
) -> None:
    history = record(writes, reads)
    final = {
        key: (v.seq, v.tombstone)
        for key, v in visible(single_copy_at(writes, END), END).items()
        if not (v.tombstone and tombstones_collected)
    }
    assert lost_writes(history, final, read_at=END) == []
    assert resurrections(history, final, consistencies=("one", "quorum")) == []
    assert stale_quorum_reads(history) == []
    assert non_monotonic_reads(history) == []
