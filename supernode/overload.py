"""Load shedding: refuse the excess at once, with a hint saying when to come back.

A reconnect storm (every client of a region coming back at once, as when Skype went down in
December 2010 with reconnect traffic about 100x normal) costs a node logins (signature
checks), registrations (signature check and replication to the other replicas) and watch
opens (subscription and a snapshot from the replicas) all at once. Queued, they all get
slow, time out on the client, and are sent again: the node spends its CPU on answers nobody
waits for. Refused at the door, in microseconds, they cost almost nothing, and a hint that
spreads their return turns the spike into a ramp.

Two signals, both plain counters checked before a request is parsed:

* **work in flight**: calls inside their handler, node-wide and per :class:`CallClass`.
  This is what piles up when handlers wait for other nodes (a cluster's registrations and
  watch snapshots wait for replicas).
* **event-loop lag**: how late a timer fires (:func:`supernode.loop_lag.sample_loop_lag`
  reports it). A handler that answers synchronously (a node alone answers a login or a
  registration from its own store) is never "in flight" for long, yet a flood of them
  queues up in front of the event loop; the lag is where that shows. While it exceeds
  its bound the *deferrable* classes (logins, writes, stream opens: new work) are refused,
  and lookups, which serve the sessions that already exist, go on.

What is never gated (the handler gets no lane): gRPC health checks and reflection (not our
handlers), the internal ``ClusterService`` (node-to-node replication, replica reads, feeds,
offer delivery: refusing it would turn one node's client flood into every node's write
failures, and it is bounded by the coordinating node's own gates), the workers' private
replication feed, ``Answer`` (it completes a Connect in flight: refusing it would hold the
very slots that are short), and ``Relay`` streams (a relay needs a ticket from a
``Connect``, which is gated, and has its own byte and idle limits).

Pure: the clock and the random source are injected; the gRPC edge
(``supernode.rpc.handlers``) turns a :class:`Overloaded` into ``RESOURCE_EXHAUSTED`` with
``grpc-retry-pushback-ms`` trailing metadata.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from supernode.errors import Reason, RetryLater


class CallClass(enum.Enum):
    """Kinds of calls with their own bound on concurrent work."""

    LOGIN = "login"  # GetChallenge, Login: a signature check each
    WRITE = "write"  # RegisterDevice, UnregisterDevice, CreateAccount: signature + replication
    STREAM_OPEN = "stream_open"  # Watch, Listen: until the first message (snapshot, ready)
    LOOKUP = "lookup"  # Lookup, LookupMany, GetAccount, Search: the hot path
    SIGNALING = "signaling"  # Connect: waits for the callee's answer


# Classes refused while the event loop lags: new work, which a client can bring back later,
# while lookups serve the sessions that already exist.
DEFERRABLE = frozenset({CallClass.LOGIN, CallClass.WRITE, CallClass.STREAM_OPEN})

# The public methods that are gated, by the name their handler is bound with. A method not
# listed here is exempt (see the module docstring).
CLASS_OF_METHOD: Mapping[str, CallClass] = {
    "GetChallenge": CallClass.LOGIN,
    "Login": CallClass.LOGIN,
    "CreateAccount": CallClass.WRITE,
    "RegisterDevice": CallClass.WRITE,
    "UnregisterDevice": CallClass.WRITE,
    "KeepAlive": CallClass.WRITE,
    "Watch": CallClass.STREAM_OPEN,
    "Listen": CallClass.STREAM_OPEN,
    "Lookup": CallClass.LOOKUP,
    "GetPlacement": CallClass.LOOKUP,
    "LookupMany": CallClass.LOOKUP,
    "GetAccount": CallClass.LOOKUP,
    "Search": CallClass.LOOKUP,
    "Connect": CallClass.SIGNALING,
}


@dataclass(frozen=True)
class OverloadSettings:
    """Bounds on a node's concurrent work, and how refused clients are spread out.

    The defaults are far above what a healthy node sees at its peaks (the benchmarks keep
    at most a few hundred calls in flight, and a loop lag of tens of milliseconds at
    saturation), so only a storm is refused. 0 turns a bound off.
    """

    # Calls inside their handler on this process, all gated classes together.
    max_in_flight: int = 5000
    max_in_flight_login: int = 1000
    max_in_flight_write: int = 2000
    max_in_flight_stream_open: int = 1000
    max_in_flight_lookup: int = 5000
    # Connect waits for the callee's answer (seconds): many may wait at once, cheaply.
    max_in_flight_signaling: int = 2000
    # Event-loop lag beyond which logins, writes and stream opens are refused.
    max_loop_lag_ms: int = 1000
    loop_lag_sample_ms: int = 100
    # The retry hint: at least this, growing with the refusals of the last seconds up to
    # the maximum, and drawn at random from the upper half of that window.
    retry_after_min_ms: int = 200
    retry_after_max_ms: int = 10_000

    def __post_init__(self) -> None:
        for name in (
            "max_in_flight",
            "max_in_flight_login",
            "max_in_flight_write",
            "max_in_flight_stream_open",
            "max_in_flight_lookup",
            "max_in_flight_signaling",
            "max_loop_lag_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"overload.{name}: {getattr(self, name)}, must be >= 0 (0: off)")
        if self.loop_lag_sample_ms < 1:
            raise ValueError(f"overload.loop_lag_sample_ms: {self.loop_lag_sample_ms}, at least 1")
        if not 1 <= self.retry_after_min_ms <= self.retry_after_max_ms:
            raise ValueError(
                "overload: need 1 <= retry_after_min_ms <= retry_after_max_ms "
                f"(got {self.retry_after_min_ms} and {self.retry_after_max_ms})"
            )

    def class_limit(self, call_class: CallClass) -> int:
        limit: int = getattr(self, f"max_in_flight_{call_class.value}")
        return limit


class Overloaded(RetryLater):
    """Refused to protect the node; come back after ``retry_after_ms``.

    Unlike every other ``ResourceExhausted`` (a device cap, a watch limit: answers that a
    retry would get again), this one says nothing about the request, so it carries a retry
    hint and the SDK retries it.
    """

    reason = Reason.OVERLOADED


# Refusals are remembered with this time constant: the hint follows the last seconds' crowd.
_REFUSAL_MEMORY_S = 2.0


@dataclass
class _Pressure:
    """A decaying count of recent refusals of one class (an exponential moving sum)."""

    level: float = 0.0
    at: float = 0.0

    def add(self, now: float) -> float:
        self.level = self.level * math.exp(-max(0.0, now - self.at) / _REFUSAL_MEMORY_S) + 1.0
        self.at = now
        return self.level


def retry_after_ms(
    recent_refusals: float, limit: int, settings: OverloadSettings, rng: random.Random
) -> int:
    """The hint for one refusal: a window that widens with the crowd, a random point in it.

    The window's top is ``retry_after_min_ms`` times (1 + refusals of the last seconds per
    admitted slot), capped at ``retry_after_max_ms``: a hundred refused per slot are told to
    spread over a window a hundred times longer than one refused. The hint is drawn from
    the window's upper half, so refused clients never come back in lockstep, and never
    sooner than half the minimum.
    """
    crowd = recent_refusals / max(1, limit)
    top = min(float(settings.retry_after_max_ms), settings.retry_after_min_ms * (1.0 + crowd))
    return max(1, round(top * rng.uniform(0.5, 1.0)))


@dataclass
class Lane:
    """The gate of one class on one process: :meth:`enter` before the work, :meth:`leave`
    after it (always, once per successful enter)."""

    call_class: CallClass
    limit: int  # 0: unbounded
    node: Shedding
    in_flight: int = 0
    shed: int = 0
    _pressure: _Pressure = field(default_factory=_Pressure)

    def enter(self) -> None:
        """Count the call in, or raise :class:`Overloaded` (nothing counted)."""
        node = self.node
        if (
            (self.limit and self.in_flight >= self.limit)
            or (node.max_in_flight and node.in_flight >= node.max_in_flight)
            or (node.lagging and self.call_class in DEFERRABLE)
        ):
            raise self._refusal()
        self.in_flight += 1
        node.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        self.node.in_flight -= 1

    def _refusal(self) -> Overloaded:
        node = self.node
        if self.limit and self.in_flight >= self.limit:
            why, limit = f"{self.limit} {self.call_class.value} calls in progress", self.limit
        elif node.max_in_flight and node.in_flight >= node.max_in_flight:
            why, limit = f"{node.max_in_flight} calls in progress", node.max_in_flight
        else:
            why = f"event loop {node.lag_ms} ms behind"
            limit = max(1, self.limit or node.max_in_flight)
        self.shed += 1
        hint = retry_after_ms(self._pressure.add(node.clock()), limit, node.settings, node.rng)
        return Overloaded(
            f"overloaded: {why}; retry in {hint / 1000:.1f} s (grpc-retry-pushback-ms)", hint
        )


class Shedding:
    """The load-shedding state of one process: the node-wide count and one lane per class."""

    def __init__(
        self,
        settings: OverloadSettings,
        *,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.max_in_flight = settings.max_in_flight
        self.in_flight = 0
        self.lag_ms = 0
        self.lagging = False
        self.lanes = {c: Lane(c, settings.class_limit(c), self) for c in CallClass}

    def lane(self, method: str) -> Lane | None:
        """The lane that gates ``method``, or None when it is exempt."""
        call_class = CLASS_OF_METHOD.get(method)
        return None if call_class is None else self.lanes[call_class]

    def observe_loop_lag(self, lag_ms: float) -> None:
        """The latest lag sample; deferrable classes are refused while it is over the bound."""
        self.lag_ms = round(lag_ms)
        bound = self.settings.max_loop_lag_ms
        self.lagging = bool(bound) and lag_ms > bound
