"""Reading Prometheus text exposition with the client library's own parser."""

import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series has not been created yet."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def families(text: str) -> set[str]:
    """The metric family names of a scrape, as a query names them (``_total`` kept on
    counters); the ``_created`` timestamps prometheus-client adds to counters and
    histograms, which its text parser reads as gauges of their own, left out."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return {name for name in names if not name.endswith("_created")}


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        time.sleep(0.05)
