"""Reading a server's Prometheus endpoint: the benchmarks' one way to ask a server what it did.

Shared by the cluster benchmark (placement epochs, forwarded calls) and the native load
generator (:mod:`benchmarks.native`), which sees only HTTP status and so must take the
count of calls the server answered OK from the server itself.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

_SCRAPE_TIMEOUT_S = 5.0


def scrape(url: str) -> str:
    """The text exposition at ``url`` (blocking: async callers use ``asyncio.to_thread``)."""
    with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT_S) as response:
        text: str = response.read().decode()
        return text


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples (a counter's ``_total`` too) matching ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, f"{name}_total") and labels.items() <= sample.labels.items()
    )
