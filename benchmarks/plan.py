"""What a run measures, in what order: pure functions of the settings and earlier results.

A run has four phases, each interleaving the systems (slot by slot: every system's first
workload, then every system's second, ...) so that drift on a shared machine (other load,
thermal state, page cache) hits all systems alike:

1. ``unloaded``: ping-pong, one request at a time.
2. ``saturation``: closed loop, the workload's maximum throughput at fixed concurrency.
3. ``sweep``: open loop at fractions of that maximum (or at absolute rates).
4. ``common``: open loop at one absolute rate per batch size, the same for every system
   (half the slowest system's maximum), for the percentile-spectrum comparison.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

UNLOADED = "unloaded"
SATURATION = "saturation"
SWEEP = "sweep"
COMMON = "common"
# The native generator's phases (benchmarks.native_phase): after the four above, the same
# workloads driven by h2load / redis-benchmark, one request at a time and saturated.
NATIVE_UNLOADED = "native-unloaded"
NATIVE_SATURATION = "native-saturation"
PHASES = (UNLOADED, SATURATION, SWEEP, COMMON, NATIVE_UNLOADED, NATIVE_SATURATION)

W = TypeVar("W")  # a workload of any generator's

FULL_FRACTIONS = (0.10, 0.25, 0.50, 0.75, 0.90, 1.00, 1.20)
QUICK_FRACTIONS = (0.50,)
COMMON_FRACTION = 0.5
# Requests in flight when saturating: enough to keep a server busy; batches are heavier.
SINGLE_KEY_CONCURRENCY = 64
BATCH_CONCURRENCY = 16
# The open loop may have this many times the saturation concurrency in flight.
OPEN_LOOP_HEADROOM = 2


@dataclass(frozen=True)
class Rate:
    """A sweep point: a fraction of the workload's measured maximum, or absolute ops/s."""

    value: float
    relative: bool = True

    def ops_per_s(self, maximum: float) -> float:
        return self.value * maximum if self.relative else self.value

    @property
    def label(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}/s"


def parse_rates(text: str) -> list[Rate]:
    """``10%,50%,1200``: percentages of each maximum and absolute ops/s, in order."""
    rates = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        relative = item.endswith("%")
        value = float(item.removesuffix("%"))
        if value <= 0:
            raise ValueError(f"rate {item!r}: must be positive")
        rates.append(Rate(value / 100, True) if relative else Rate(value, False))
    if not rates:
        raise ValueError("no rates given")
    return rates


def fraction_rates(fractions: Sequence[float]) -> list[Rate]:
    return [Rate(fraction) for fraction in fractions]


def interleave(workloads_by_system: Sequence[Sequence[W]]) -> list[W]:
    """Slot by slot across systems: a1 b1 c1 a2 b2 c2 a3 c3 (b had only two workloads)."""
    slots = itertools.zip_longest(*workloads_by_system)
    return [spec for slot in slots for spec in slot if spec is not None]


def saturation_concurrency(batch: int) -> int:
    return SINGLE_KEY_CONCURRENCY if batch == 1 else BATCH_CONCURRENCY


def open_loop_concurrency(batch: int) -> int:
    return OPEN_LOOP_HEADROOM * saturation_concurrency(batch)


def common_rates(
    maxima: dict[tuple[str, str], float],
    batches: dict[tuple[str, str], int],
    fraction: float = COMMON_FRACTION,
) -> dict[int, float]:
    """Per batch size: ``fraction`` of the slowest maximum among workloads of that size.

    Every system can then sustain the rate, so their latency spectra are comparable.
    """
    slowest: dict[int, float] = {}
    for key, maximum in maxima.items():
        if maximum <= 0:
            continue
        batch = batches[key]
        slowest[batch] = min(maximum, slowest.get(batch, maximum))
    return {batch: fraction * maximum for batch, maximum in slowest.items()}
