"""The path policy's transitions, driven by hand with explicit time (no I/O, no loop)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.p2p.path_policy import (
    PathChange,
    PathChangeReason,
    PathKind,
    PathPolicy,
    PathPolicySettings,
    Probe,
)

DIRECT, RELAY = PathKind.DIRECT, PathKind.RELAY
SETTINGS = PathPolicySettings(
    probe_interval=1.0, dead_after=3.0, suspect_after=1.5, recover_after=2, relay_keepalive=10.0
)


class Driver:
    """A policy and a peer that answers probes on the paths that work."""

    def __init__(self, *, direct: bool = True, relay: bool = True, proven: bool = True) -> None:
        self.policy = PathPolicy(SETTINGS, random.Random(7))
        self.now = 0.0
        self.working = {DIRECT: True, RELAY: True}
        self.sent: list[Probe] = []
        if direct:
            self.policy.add(DIRECT, self.now, proven=proven)
        if relay:
            self.policy.add(RELAY, self.now, proven=True)

    def run_until(self, until: float) -> None:
        """Fire every timer up to ``until``; working paths answer at once."""
        while (at := self.policy.get_timer()) is not None and at <= until:
            self.now = at
            self.policy.handle_timer(self.now)
            self.answer()
        self.now = until

    def answer(self) -> None:
        for probe in self.policy.probes_to_send():
            self.sent.append(probe)
            if self.working[probe.kind]:
                self.policy.probe_answered(probe.kind, probe.token, self.now)

    def events(self) -> list[PathChange]:
        events = []
        while (event := self.policy.next_event()) is not None:
            events.append(event)
        return events


def test_a_proven_direct_path_is_chosen_at_setup_and_kept_while_it_answers() -> None:
    d = Driver()
    assert d.policy.active is DIRECT
    assert d.events() == [PathChange(0.0, None, DIRECT, PathChangeReason.SETUP)]
    d.run_until(60.0)
    assert d.policy.active is DIRECT and d.events() == []
    direct_probes = [p for p in d.sent if p.kind is DIRECT]
    relay_probes = [p for p in d.sent if p.kind is RELAY]
    assert len(direct_probes) == 60  # one per probe_interval
    assert len(relay_probes) == 6  # the relay's keepalive, every 10 s


def test_a_silent_direct_path_moves_the_connection_to_the_relay_after_dead_after() -> None:
    d = Driver()
    d.run_until(10.0)
    d.events()
    d.working[DIRECT] = False
    d.run_until(12.9)
    assert d.policy.active is DIRECT  # 10 s was the last answer: 2.9 s of silence
    d.run_until(13.0)
    assert d.policy.active is RELAY
    assert d.events() == [PathChange(13.0, DIRECT, RELAY, PathChangeReason.DIRECT_SILENT, 3.0)]


def test_one_lost_probe_does_not_move_the_connection() -> None:
    d = Driver()
    d.run_until(5.0)
    d.working[DIRECT] = False
    d.run_until(6.0)  # the probe at 6 s is lost
    d.working[DIRECT] = True
    d.run_until(30.0)
    assert d.policy.active is DIRECT and d.events()[1:] == []


def test_the_direct_path_is_used_again_after_recover_after_answers() -> None:
    d = Driver()
    d.working[DIRECT] = False
    d.run_until(3.0)
    assert d.policy.active is RELAY
    d.run_until(20.0)  # still probed while down
    assert [p.kind for p in d.sent].count(DIRECT) == 20
    d.working[DIRECT] = True
    d.run_until(21.0)
    assert d.policy.active is RELAY  # one answer is not enough
    d.run_until(22.0)
    assert d.policy.active is DIRECT
    assert d.events()[-1] == PathChange(
        22.0, RELAY, DIRECT, PathChangeReason.DIRECT_ANSWERS, waited_seconds=1.0
    )


def test_answers_to_probes_sent_before_the_outage_do_not_count_towards_recovery() -> None:
    d = Driver()
    d.run_until(1.0)
    d.working[DIRECT] = False
    d.run_until(2.0)
    late = d.sent[-1]
    d.run_until(4.0)
    assert d.policy.active is RELAY
    d.policy.probe_answered(late.kind, late.token, d.now)  # sent at 2 s, answered only now
    assert d.policy.active is RELAY and not d.policy.is_up(DIRECT)


def test_forged_or_misrouted_answers_are_ignored() -> None:
    d = Driver()
    d.working[DIRECT] = False
    d.run_until(2.5)
    probe = next(p for p in d.sent if p.kind is DIRECT)
    d.policy.probe_answered(DIRECT, probe.token ^ 1, d.now)  # unknown token
    d.policy.probe_answered(RELAY, probe.token, d.now)  # right token, other path
    d.run_until(3.0)
    assert d.policy.active is RELAY


def test_an_answered_probe_counts_once() -> None:
    d = Driver()
    d.working[DIRECT] = False
    d.run_until(3.0)
    d.run_until(4.0)
    probe = d.sent[-1]
    assert probe.kind is DIRECT
    d.policy.probe_answered(DIRECT, probe.token, d.now)
    d.policy.probe_answered(DIRECT, probe.token, d.now)  # replayed
    assert d.policy.active is RELAY


def test_the_peers_move_to_the_relay_is_followed_when_direct_was_never_answered() -> None:
    """Setup: ICE worked here, but the peer settled on the relay."""
    d = Driver()
    d.events()
    d.policy.peer_sent(RELAY, 0.01)
    assert d.policy.active is RELAY
    assert d.events() == [PathChange(0.01, DIRECT, RELAY, PathChangeReason.PEER_MOVED, 0.01)]


def test_the_peers_move_to_the_relay_is_followed_once_direct_is_suspect() -> None:
    d = Driver()
    d.run_until(5.0)
    d.working[DIRECT] = False
    d.run_until(6.4)
    d.policy.peer_sent(RELAY, d.now)  # 1.4 s without an answer: not yet suspect
    assert d.policy.active is DIRECT
    d.policy.peer_sent(RELAY, 6.5)
    assert d.policy.active is RELAY
    assert d.events()[-1].reason is PathChangeReason.PEER_MOVED


def test_relay_traffic_while_direct_answers_does_not_move_the_connection() -> None:
    """The peer still on the relay for a moment after direct came back: no flapping."""
    d = Driver()
    d.run_until(5.0)
    d.policy.peer_sent(RELAY, 5.2)
    d.policy.peer_sent(DIRECT, 5.3)
    assert d.policy.active is DIRECT and d.events()[1:] == []


def test_peer_traffic_on_direct_does_not_bring_direct_back_before_its_probes_do() -> None:
    d = Driver()
    d.working[DIRECT] = False
    d.run_until(3.0)
    d.policy.peer_sent(DIRECT, 3.1)
    assert d.policy.active is RELAY


def test_without_a_relay_a_silent_direct_path_stays_in_use() -> None:
    d = Driver(relay=False)
    d.working[DIRECT] = False
    d.run_until(30.0)
    assert d.policy.active is DIRECT and not d.policy.is_up(DIRECT)
    assert [e.reason for e in d.events()] == [PathChangeReason.SETUP]


def test_an_unproven_direct_path_must_earn_its_use() -> None:
    d = Driver(proven=False)
    assert d.policy.active is RELAY
    d.run_until(1.0)
    assert d.policy.active is RELAY
    d.run_until(2.0)
    assert d.policy.active is DIRECT


def test_a_relay_only_connection_keeps_the_relay_alive() -> None:
    d = Driver(direct=False)
    assert d.policy.active is RELAY
    d.run_until(35.0)
    assert [p.kind for p in d.sent] == [RELAY, RELAY, RELAY]


def test_the_relays_idle_timeout_caps_its_keepalive() -> None:
    policy = PathPolicy(SETTINGS, random.Random(1))
    policy.add(RELAY, 0.0, proven=True, keepalive=4.0)
    assert policy.get_timer() == 4.0


def test_closing_paths() -> None:
    d = Driver()
    d.events()
    d.policy.remove(RELAY, 1.0)
    assert d.policy.active is DIRECT and d.events() == []
    d.policy.add(RELAY, 2.0, proven=True)
    d.policy.remove(DIRECT, 3.0)
    assert d.policy.active is RELAY
    assert d.events() == [PathChange(3.0, DIRECT, RELAY, PathChangeReason.PATH_CLOSED)]
    d.policy.remove(DIRECT, 3.0)  # twice: nothing more
    d.policy.remove(RELAY, 4.0)
    assert d.policy.active is None and d.policy.get_timer() is None
    assert d.events() == [PathChange(4.0, RELAY, None, PathChangeReason.PATH_CLOSED)]


def test_a_proven_direct_path_added_later_takes_over() -> None:
    d = Driver(direct=False)
    d.events()
    d.policy.add(DIRECT, 1.0, proven=True)
    assert d.policy.active is DIRECT
    assert d.events() == [PathChange(1.0, RELAY, DIRECT, PathChangeReason.PATH_ADDED)]


def test_the_timer_is_the_next_probe_or_the_direct_deadline() -> None:
    d = Driver()
    assert d.policy.get_timer() == 1.0
    d.working[DIRECT] = False
    d.run_until(2.5)
    assert d.policy.get_timer() == 3.0  # both the next probe and dead_after since 0 s
    d.policy.handle_timer(2.6)  # early: nothing due
    assert d.policy.probes_to_send() == [] and d.policy.active is DIRECT


def test_unanswered_probes_are_forgotten() -> None:
    d = Driver()
    d.working[DIRECT] = d.working[RELAY] = False
    d.run_until(1000.0)
    # Kept for twice the longest interval (20 s): 21 direct probes and 3 relay keepalives.
    assert len(d.policy._outstanding) == 24


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["tick", "cut", "heal", "relay-traffic", "close-relay"]),
            st.floats(0.0, 5.0),
        ),
        max_size=40,
    )
)
def test_invariants_under_any_sequence(steps: list[tuple[str, float]]) -> None:
    """Direct carries the connection exactly when it is up (with a relay to fall back on);
    each change event says what the active path became; time never goes backwards."""
    d = Driver()
    d.events()
    active = d.policy.active
    for op, delay in steps:
        if op == "cut":
            d.working[DIRECT] = False
        elif op == "heal":
            d.working[DIRECT] = True
        elif op == "relay-traffic":
            d.policy.peer_sent(RELAY, d.now)
        elif op == "close-relay":
            d.policy.remove(RELAY, d.now)
        d.run_until(d.now + delay)
        for event in d.events():
            assert event.old is active and event.new is not active
            assert event.waited_seconds is None or event.waited_seconds >= 0
            active = event.new
        assert d.policy.active is active
        if PathKind.RELAY in d.policy._paths:
            assert (active is DIRECT) == d.policy.is_up(DIRECT)
        else:
            assert active is DIRECT
