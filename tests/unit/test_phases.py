"""The phase bookkeeping of the join benchmark (benchmarks.phases): which phase a moment is
in, lookups and watched writes charged to the phase they were sent in, an event that beats
its write's acknowledgement, and acknowledged writes whose event never came."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.phases import OK, PhaseLedger, Phases, ratio, summarize


def three_phases() -> Phases:
    phases = Phases("steady", 10.0)
    phases.begin("join", 20.0)
    phases.begin("after", 25.0)
    return phases


def test_a_moment_falls_in_the_phase_that_began_last_before_it() -> None:
    phases = three_phases()
    assert [phases.at(t) for t in (5.0, 10.0, 19.9, 20.0, 24.0, 25.0, 99.0)] == [
        "steady", "steady", "steady", "join", "join", "after", "after",
    ]  # fmt: skip
    assert phases.duration("steady", 40.0) == 10.0
    assert phases.duration("join", 40.0) == 5.0
    assert phases.duration("after", 40.0) == 15.0


def test_phases_only_go_forward_and_never_repeat() -> None:
    phases = Phases("steady", 10.0)
    with pytest.raises(ValueError, match="before"):
        phases.begin("join", 9.0)
    phases.begin("join", 11.0)
    with pytest.raises(ValueError, match="already"):
        phases.begin("join", 12.0)


@given(st.lists(st.tuples(st.floats(0, 40), st.sampled_from([OK, "UNAVAILABLE"])), max_size=60))
def test_every_lookup_is_counted_once_in_the_phase_it_was_scheduled_in(
    calls: list[tuple[float, str]],
) -> None:
    ledger = PhaseLedger(three_phases())
    for scheduled, outcome in calls:
        ledger.lookup(scheduled, scheduled + 0.002, outcome)
    rows = summarize(ledger, 40.0)
    assert sum(r.lookups for r in rows) == len(calls)
    for row in rows:
        mine = [o for t, o in calls if three_phases().at(t) == row.phase]
        assert row.lookups == len(mine)
        assert row.lookups_failed == ({"UNAVAILABLE": mine.count("UNAVAILABLE")}
                                      if "UNAVAILABLE" in mine else {})  # fmt: skip


def test_a_write_is_charged_to_the_phase_it_was_sent_in_even_if_answered_later() -> None:
    ledger = PhaseLedger(three_phases())
    key = ("user1", "phone", 2)
    ledger.write_sent(key, 19.5)
    ledger.write_answered(key, True)
    ledger.event(key, 20.5)  # notified during the join, sent in the steady state
    steady, join, _ = summarize(ledger, 40.0)
    assert (steady.writes_acknowledged, steady.notified, join.notified) == (1, 1, 0)
    assert steady.delay_p50_us == pytest.approx(1_000_000, rel=0.001)


def test_an_event_may_come_before_the_acknowledgement() -> None:
    ledger = PhaseLedger(three_phases())
    key = ("user1", "phone", 2)
    ledger.write_sent(key, 11.0)
    ledger.event(key, 11.01)
    ledger.write_answered(key, True)
    assert ledger.outstanding() == 0 and ledger.missed() == {}


def test_acknowledged_writes_without_their_event_are_missed_and_failed_ones_are_not() -> None:
    ledger = PhaseLedger(three_phases())
    acknowledged, failed = ("user1", "phone", 2), ("user2", "phone", 2)
    for key in (acknowledged, failed):
        ledger.write_sent(key, 21.0)
    ledger.write_answered(acknowledged, True)
    ledger.write_answered(failed, False)
    assert ledger.outstanding() == 1 and ledger.missed() == {"join": 1}
    join = summarize(ledger, 40.0)[1]
    assert (join.missed, join.writes_failed) == (1, 1)


def test_an_event_of_no_write_or_a_second_copy_is_unexpected() -> None:
    ledger = PhaseLedger(three_phases())
    key = ("user1", "phone", 2)
    ledger.event(key, 12.0)
    ledger.write_sent(key, 12.5)
    ledger.event(key, 12.6)
    ledger.event(key, 12.7)
    assert ledger.unexpected_events == 2


def test_a_write_cannot_be_sent_twice() -> None:
    ledger = PhaseLedger(three_phases())
    ledger.write_sent(("user1", "phone", 2), 12.0)
    with pytest.raises(ValueError, match="twice"):
        ledger.write_sent(("user1", "phone", 2), 13.0)


def test_ratios_of_a_missing_or_empty_phase_are_none() -> None:
    ledger = PhaseLedger(three_phases())
    ledger.lookup(11.0, 11.001, OK)
    ledger.lookup(21.0, 21.004, OK)
    rows = summarize(ledger, 40.0)
    assert ratio(rows, "lookup_p99_us", "join", "steady") == pytest.approx(4.0, rel=0.01)
    assert ratio(rows, "lookup_p99_us", "after", "steady") == 0.0
    assert ratio(rows, "lookup_p99_us", "steady", "after") is None
    assert ratio(rows, "lookup_p99_us", "nowhere", "steady") is None
