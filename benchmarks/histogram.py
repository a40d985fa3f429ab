"""Latency histograms: one HdrHistogram shape for every measurement, so any two merge.

Values are microseconds from 1 µs to 60 s at 3 significant digits. Generator processes send
their histograms to the orchestrator as the compact base64 "histoblob" that hdrh encodes,
which is also what ``results.json`` keeps, so a figure can be re-analysed later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

# Percentiles every figure reports (p50, p90, p99, p99.9); max is reported on its own.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(histogram: HdrHistogram, microseconds: float) -> None:
    """Record one latency, clamped into range: a lost outlier would flatter the tail."""
    histogram.record_value(min(max(int(microseconds), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    histogram: HdrHistogram = HdrHistogram.decode(encoded.encode("ascii"))
    return histogram


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """Sum histograms from several processes (counts add; percentiles are recomputed)."""
    total = new_histogram()
    for blob in encoded:
        total.add(decode(blob))
    return total


@dataclass(frozen=True)
class Summary:
    """The latency figures a report shows, in microseconds."""

    count: int
    mean: float
    p50: int
    p90: int
    p99: int
    p999: int
    max: int


def summarize(histogram: HdrHistogram) -> Summary:
    if histogram.get_total_count() == 0:
        return Summary(0, 0.0, 0, 0, 0, 0, 0)
    p50, p90, p99, p999 = (histogram.get_value_at_percentile(p) for p in PERCENTILES)
    return Summary(
        count=histogram.get_total_count(),
        mean=float(histogram.get_mean_value()),
        p50=p50,
        p90=p90,
        p99=p99,
        p999=p999,
        max=histogram.get_max_value(),
    )


def spectrum(histogram: HdrHistogram, ticks_per_half_distance: int = 5) -> list[tuple[float, int]]:
    """(percentile, latency µs) pairs that densify toward 100 %, for percentile plots."""
    if histogram.get_total_count() == 0:
        return []
    points = [
        (item.percentile_level_iterated_to, item.value_iterated_to)
        for item in histogram.get_percentile_iterator(ticks_per_half_distance)
    ]
    return [(min(p, 100.0), v) for p, v in points]
