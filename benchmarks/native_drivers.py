"""What the suite's native phase drives: one workload of one system, and how it is loaded.

A :class:`NativeWorkload` names the workload as the Python generator's figures do (same
system, workload and batch, so the two generators' rows line up) and carries a driver that
runs one point: :class:`GrpcDriver` (h2load, :mod:`benchmarks.native`) for the gRPC servers,
``RedisDriver`` (``redis-benchmark``, :mod:`benchmarks.redis_native`) for Redis. A driver
returns a :class:`~benchmarks.native.NativePoint` already judged by the server's own
counters: a native generator sees no answer's content, so nothing else says the calls
succeeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from benchmarks.native import (
    SUPERNODE_CALLS,
    CallCounter,
    NativePoint,
    ServerCounts,
    judge,
    method_label,
    run_h2load,
    scrape_counts,
)

KeysByBatch = Mapping[int, list[int]]
"""The user indexes a native request of each batch size asks for (one fixed body each)."""


class NativeDriver(Protocol):
    @property
    def multiplexed(self) -> bool:
        """True: requests share a connection (HTTP/2 streams); False: one in flight each."""

    async def run(
        self, *, clients: int, streams: int, duration_s: float, warmup_s: float
    ) -> NativePoint:
        """One point: ``clients`` connections with ``streams`` requests in flight on each
        (``streams`` is 1 for a protocol without multiplexing), judged by the server."""


@dataclass(frozen=True)
class NativeWorkload:
    system: str
    workload: str  # as the Python generator's ClientSpec names it
    batch: int
    driver: NativeDriver = field(compare=False)
    # Run once before the workload's first point, for a server whose counters cannot tell
    # a found key from a missing one (etcd answers OK with no kvs): raises if a key of the
    # fixed request is missing, which fails the workload's points.
    precheck: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


@runtime_checkable
class NativeSystem(Protocol):
    """A system the native generator can drive (every system of ``benchmarks.run``)."""

    name: str

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        """Its workloads for the native generator, each asking for ``keys[batch]``."""


@dataclass(frozen=True)
class GrpcDriver:
    """h2load calling one unary method with one fixed request, judged by the calls the
    server's processes counted (several URLs: a server of several processes, each of which
    counts only what it answered)."""

    target: str
    method_path: str
    request: bytes
    metadata: tuple[tuple[str, str], ...]
    metrics_urls: Sequence[str]
    counter: CallCounter = SUPERNODE_CALLS
    multiplexed: bool = True

    async def counts(self) -> ServerCounts:
        method = method_label(self.method_path)
        counted = await asyncio.gather(
            *(scrape_counts(url, method, self.counter) for url in self.metrics_urls)
        )
        return sum(counted, ServerCounts(0, 0))

    async def run(
        self, *, clients: int, streams: int, duration_s: float, warmup_s: float
    ) -> NativePoint:
        if not self.metrics_urls:
            raise ValueError(f"{self.target}: no counters to judge a native point by")
        before = await self.counts()
        point = await run_h2load(
            self.target, self.method_path, self.request, metadata=self.metadata,
            duration_s=duration_s, warmup_s=warmup_s, clients=clients, streams=streams,
        )  # fmt: skip
        return judge(point, await self.counts() - before)
