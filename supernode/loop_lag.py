"""Event-loop lag: how late a timer fires, the overload signal of a single-threaded server.

A handler that answers synchronously is never in flight for long, so a flood of them does
not show in ``supernode.overload``'s in-flight counts: it shows as a queue of ready calls in
front of the event loop, which delays every timer by the time it takes to work through
them. Sampling that delay a few times a second costs one timer per sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from supernode.overload import Shedding


async def sample_loop_lag(
    shedding: Shedding, observe: Callable[[float], None] | None = None
) -> None:
    """Report the lag of every sample to ``shedding`` (and, in seconds, to ``observe``:
    the metrics' histogram) until cancelled."""
    interval = shedding.settings.loop_lag_sample_ms / 1000
    while True:
        due = time.monotonic() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, time.monotonic() - due)
        shedding.observe_loop_lag(lag * 1000)
        if observe is not None:
            observe(lag)
