"""The pure bookkeeping of a benchmark measured in phases (steady state, a join, after it):
which phase a moment belongs to, lookups' latencies and outcomes per phase, and each watched
write's notification delay, from the write's send to the watcher's event.

No I/O here: :mod:`benchmarks.cluster_join` feeds it times and outcomes and prints what
:func:`summarize` returns. A lookup or a write belongs to the phase its (scheduled) send
time falls in, so a call delayed by a join is charged to the join even if it completes
after it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from benchmarks import histogram as hist

OK = "OK"

WriteKey = tuple[str, str, int]  # handle, device id, seq: one watched write


class Phases:
    """Named phases, each from its start until the next one's (the last one open-ended)."""

    def __init__(self, first: str, at: float) -> None:
        self._names = [first]
        self._starts = [at]

    def begin(self, name: str, at: float) -> None:
        if at < self._starts[-1]:
            raise ValueError(f"phase {name} begins at {at} before {self._names[-1]}")
        if name in self._names:
            raise ValueError(f"phase {name} already began")
        self._names.append(name)
        self._starts.append(at)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def at(self, moment: float) -> str:
        """The phase ``moment`` falls in (before the first: the first)."""
        return self._names[max(bisect.bisect_right(self._starts, moment) - 1, 0)]

    def duration(self, name: str, end: float) -> float:
        """How long phase ``name`` lasted, the last one until ``end``."""
        index = self._names.index(name)
        stop = self._starts[index + 1] if index + 1 < len(self._starts) else end
        return stop - self._starts[index]


@dataclass
class PhaseRecord:
    """What happened to the calls sent during one phase."""

    lookups: HdrHistogram = field(default_factory=hist.new_histogram)
    outcomes: Counter[str] = field(default_factory=Counter)  # "OK" or a status code's name
    delays: HdrHistogram = field(default_factory=hist.new_histogram)
    writes_sent: int = 0
    writes_acknowledged: int = 0
    writes_failed: int = 0
    notified: int = 0


class PhaseLedger:
    """Lookups and watched writes by the phase they were sent in."""

    def __init__(self, phases: Phases) -> None:
        self.phases = phases
        self.records: dict[str, PhaseRecord] = {}
        self._sent: dict[WriteKey, float] = {}
        self._acknowledged: set[WriteKey] = set()
        self._delivered: set[WriteKey] = set()
        self.unexpected_events = 0  # events of no write sent here (or delivered twice)

    def _record(self, moment: float) -> PhaseRecord:
        return self.records.setdefault(self.phases.at(moment), PhaseRecord())

    def lookup(self, scheduled: float, done: float, outcome: str) -> None:
        record = self._record(scheduled)
        record.outcomes[outcome] += 1
        if outcome == OK:
            hist.record_us(record.lookups, (done - scheduled) * 1e6)

    def write_sent(self, key: WriteKey, at: float) -> None:
        if key in self._sent:
            raise ValueError(f"write {key} sent twice")
        self._sent[key] = at
        self._record(at).writes_sent += 1

    def write_answered(self, key: WriteKey, acknowledged: bool) -> None:
        """The write's answer (its event may have come first: the watcher and the writer
        hear from different nodes)."""
        record = self._record(self._sent[key])
        if acknowledged:
            self._acknowledged.add(key)
            record.writes_acknowledged += 1
        else:
            record.writes_failed += 1

    def event(self, key: WriteKey, at: float) -> None:
        """The watcher received ``key``'s change at ``at``."""
        sent = self._sent.get(key)
        if sent is None or key in self._delivered:
            self.unexpected_events += 1
            return
        self._delivered.add(key)
        record = self._record(sent)
        record.notified += 1
        hist.record_us(record.delays, (at - sent) * 1e6)

    def missed(self) -> dict[str, int]:
        """Acknowledged writes whose event has not arrived, by phase."""
        missing: Counter[str] = Counter()
        for key in self._acknowledged - self._delivered:
            missing[self.phases.at(self._sent[key])] += 1
        return dict(missing)

    def outstanding(self) -> int:
        """Acknowledged writes still waiting for their event."""
        return len(self._acknowledged - self._delivered)


@dataclass(frozen=True)
class PhaseSummary:
    phase: str
    seconds: float
    lookups: int
    lookups_failed: dict[str, int]
    lookup_success: float | None  # fraction of lookups sent in the phase that succeeded
    lookup_p50_us: int
    lookup_p99_us: int
    lookup_p999_us: int
    lookup_max_us: int
    writes_acknowledged: int
    writes_failed: int
    notified: int
    missed: int
    delay_p50_us: int
    delay_p99_us: int
    delay_max_us: int


def summarize(ledger: PhaseLedger, end: float) -> list[PhaseSummary]:
    """One summary per phase, in phase order."""
    missed = ledger.missed()
    rows = []
    for name in ledger.phases.names:
        record = ledger.records.get(name, PhaseRecord())
        lookups = hist.summarize(record.lookups)
        delays = hist.summarize(record.delays)
        total = sum(record.outcomes.values())
        failed = {code: n for code, n in sorted(record.outcomes.items()) if code != OK}
        rows.append(
            PhaseSummary(
                name, ledger.phases.duration(name, end), total, failed,
                record.outcomes[OK] / total if total else None, lookups.p50, lookups.p99,
                lookups.p999, lookups.max, record.writes_acknowledged, record.writes_failed,
                record.notified, missed.get(name, 0), delays.p50, delays.p99, delays.max,
            )
        )  # fmt: skip
    return rows


def ratio(rows: Sequence[PhaseSummary], field_name: str, phase: str, base: str) -> float | None:
    """``field_name`` of ``phase`` over that of ``base`` (None if either is missing or 0)."""
    by_name = {row.phase: row for row in rows}
    if phase not in by_name or base not in by_name:
        return None
    top, bottom = getattr(by_name[phase], field_name), getattr(by_name[base], field_name)
    return top / bottom if bottom else None
