"""Load shedding policy (supernode.overload): bounds, the lag signal, the retry hint."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supernode.overload import (
    CLASS_OF_METHOD,
    DEFERRABLE,
    CallClass,
    Overloaded,
    OverloadSettings,
    Shedding,
    retry_after_ms,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shedding(clock: Clock | None = None, **settings: int) -> Shedding:
    return Shedding(OverloadSettings(**settings), clock=clock or Clock(), rng=random.Random(1))


def test_a_class_admits_up_to_its_bound_then_refuses_with_a_hint() -> None:
    node = shedding(max_in_flight_write=2)
    lane = node.lane("RegisterDevice")
    assert lane is not None
    lane.enter()
    lane.enter()
    with pytest.raises(Overloaded, match=r"2 write calls in progress; retry in \d+\.\d s") as shed:
        lane.enter()
    assert shed.value.retry_after_ms >= 100
    assert (lane.in_flight, node.in_flight, lane.shed) == (2, 2, 1)
    lane.leave()
    lane.enter()  # a slot came free
    assert lane.in_flight == 2


def test_a_refused_call_is_not_counted_in_flight() -> None:
    node = shedding(max_in_flight_login=1)
    lane = node.lane("Login")
    assert lane is not None
    lane.enter()
    for _ in range(5):
        with pytest.raises(Overloaded):
            lane.enter()
    lane.leave()
    assert (lane.in_flight, node.in_flight) == (0, 0)


def test_the_node_wide_bound_covers_every_class() -> None:
    node = shedding(max_in_flight=2)
    login, lookup, watch = (node.lane(m) for m in ("Login", "Lookup", "Watch"))
    assert login and lookup and watch
    login.enter()
    lookup.enter()
    with pytest.raises(Overloaded, match="2 calls in progress"):
        watch.enter()
    login.leave()
    watch.enter()


def test_zero_turns_a_bound_off() -> None:
    node = shedding(max_in_flight=0, max_in_flight_lookup=0)
    lane = node.lane("Lookup")
    assert lane is not None
    for _ in range(10_000):
        lane.enter()
    assert node.in_flight == 10_000


def test_a_lagging_loop_refuses_new_work_but_serves_lookups() -> None:
    node = shedding(max_loop_lag_ms=200)
    node.observe_loop_lag(350.0)
    assert node.lagging
    for method, call_class in CLASS_OF_METHOD.items():
        lane = node.lane(method)
        assert lane is not None
        if call_class in DEFERRABLE:
            with pytest.raises(Overloaded, match="event loop 350 ms behind"):
                lane.enter()
        else:
            lane.enter()
    node.observe_loop_lag(20.0)
    assert not node.lagging
    login = node.lane("Login")
    assert login is not None
    login.enter()


def test_a_lag_bound_of_zero_never_sheds() -> None:
    node = shedding(max_loop_lag_ms=0)
    node.observe_loop_lag(60_000.0)
    assert not node.lagging


def test_internal_and_unknown_methods_are_exempt() -> None:
    node = shedding()
    for method in ("cluster.Apply", "cluster.Feed", "Relay", "Answer", "Check", "Follow"):
        assert node.lane(method) is None
    assert node.lane("Lookup") is node.lanes[CallClass.LOOKUP]


def test_the_hint_grows_with_the_crowd_of_refused_calls() -> None:
    clock = Clock()
    node = shedding(clock, max_in_flight_write=1, retry_after_min_ms=100, retry_after_max_ms=5000)
    lane = node.lane("RegisterDevice")
    assert lane is not None
    lane.enter()
    hints = []
    for _ in range(200):  # a storm: many refusals within the same instant
        with pytest.raises(Overloaded) as shed:
            lane.enter()
        hints.append(shed.value.retry_after_ms)
    assert max(hints[:5]) <= 500 < min(hints[-20:])
    assert len(set(hints[-20:])) > 10  # spread, not lockstep
    clock.now += 60  # the storm is long over: the crowd is forgotten
    with pytest.raises(Overloaded) as calm:
        lane.enter()
    assert calm.value.retry_after_ms <= 200


@given(
    refusals=st.floats(min_value=0, max_value=1e9),
    limit=st.integers(min_value=0, max_value=100_000),
    low=st.integers(min_value=1, max_value=5000),
    span=st.integers(min_value=0, max_value=60_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_hint_stays_within_half_the_minimum_and_the_maximum(
    refusals: float, limit: int, low: int, span: int, seed: int
) -> None:
    settings = OverloadSettings(retry_after_min_ms=low, retry_after_max_ms=low + span)
    hint = retry_after_ms(refusals, limit, settings, random.Random(seed))
    assert max(1, low // 2) <= hint <= low + span


@given(
    fewer=st.floats(min_value=0, max_value=1e6),
    more=st.floats(min_value=0, max_value=1e6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_hint_window_never_shrinks_as_refusals_grow(
    fewer: float, more: float, seed: int
) -> None:
    fewer, more = sorted((fewer, more))
    settings = OverloadSettings()
    # The same random draw scales both windows: the hint is monotone in the crowd.
    a = retry_after_ms(fewer, 10, settings, random.Random(seed))
    b = retry_after_ms(more, 10, settings, random.Random(seed))
    assert a <= b


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_in_flight", -1, "overload.max_in_flight"),
        ("max_in_flight_write", -5, "overload.max_in_flight_write"),
        ("max_loop_lag_ms", -1, "overload.max_loop_lag_ms"),
        ("loop_lag_sample_ms", 0, "overload.loop_lag_sample_ms"),
        ("retry_after_min_ms", 0, "retry_after_min_ms"),
        ("retry_after_max_ms", 10, "retry_after_min_ms <= retry_after_max_ms"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    setting: str, value: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OverloadSettings(**{setting: value})


def test_the_defaults_leave_room_for_normal_peaks() -> None:
    defaults = OverloadSettings()
    assert defaults.max_in_flight >= 1000 and defaults.max_loop_lag_ms >= 500
    assert all(defaults.class_limit(c) >= 500 for c in CallClass)
