"""Counts logged as one line per interval instead of one line per event.

An operator must hear that leases expire or that calls are refused (rate limits, load
shedding, failed authentication), but a line per event would bury everything else under a
flood and cost the hot path. So the node adds up what happened and logs what changed at
most once per interval, and nothing while nothing happens. Pure: time is injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

# An operator reads these; once a minute keeps a busy node's log readable.
SUMMARY_INTERVAL_S = 60.0


class Summary:
    """Totals since the last line; :meth:`due` hands them out once per interval."""

    def __init__(self, clock: Callable[[], float], interval: float = SUMMARY_INTERVAL_S) -> None:
        self._clock = clock
        self._interval = interval
        self._since = clock()
        self._counts: dict[str, int] = {}

    def add(self, counts: Mapping[str, int]) -> None:
        for key, n in counts.items():
            if n:
                self._counts[key] = self._counts.get(key, 0) + n

    def due(self) -> tuple[dict[str, int], float] | None:
        """The counts and the seconds they cover, once an interval has passed and
        something happened in it; None otherwise (and nothing is reset)."""
        now = self._clock()
        if now - self._since < self._interval or not self._counts:
            return None
        counts, seconds = self._counts, now - self._since
        self._counts, self._since = {}, now
        return counts, seconds


class CounterDeltas:
    """What monotonically growing totals (a metrics snapshot) added since the last call."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def __call__(self, totals: Mapping[str, int]) -> dict[str, int]:
        deltas = {key: total - self._last.get(key, 0) for key, total in totals.items()}
        self._last = dict(totals)
        return deltas


def log_due(log: logging.Logger, summary: Summary, what: str) -> None:
    """Log ``summary``'s counts, if due, as ``what`` plus the counts, also as fields."""
    due = summary.due()
    if due is None:
        return
    counts, seconds = due
    listed = ", ".join(f"{key} {n}" for key, n in sorted(counts.items()))
    log.info(
        "%s in the last %.0f s: %s",
        what,
        seconds,
        listed,
        extra={"counts": counts, "interval_seconds": round(seconds, 1)},
    )
