"""Drive Redis natively with ``redis-benchmark``, judged by Redis's own ``INFO``.

h2load speaks HTTP/2 only; Redis's own C load generator, ``redis-benchmark`` (Debian's
``redis-tools``, which ``redis-server`` depends on, so installing the baseline installs it),
sends any command given on its command line: ``GET <key>`` or ``MGET <key> x N``, the same
keys the Python generator fetches, from ``-c`` connections with one request in flight each
(RESP has no multiplexing; ``-P`` pipelining would be a different workload).

What redis-benchmark 7.0 does (and what the parsers rely on):

* It has no duration, only a request count (``-n``); so a short run first (the warm-up)
  measures the rate and the measured run asks for ``rate x duration`` requests.
* It prints "N requests completed in S seconds", "throughput summary: R requests per
  second" and "Latency by percentile distribution:" lines (percentile, latency in ms,
  cumulative count) from its own HdrHistogram; :func:`latency_histogram` rebuilds the
  suite's histogram from them, so percentiles are exact at the lines it prints and rounded
  up to the next printed one between them.
* It stops with exit status 1 at the first error reply ("Error from server: ..."), which
  fails the point; but a missing key is a nil reply, counted as done. Redis's own counts
  tell: ``INFO commandstats`` counts the command's ``calls`` and its ``failed_calls`` and
  ``rejected_calls``, and ``INFO stats`` counts ``keyspace_hits`` and ``keyspace_misses``
  (one per key, for MGET too). A point is failed unless the command's OK calls cover every
  request done and no key was missed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis.asyncio as aioredis
from hdrh.histogram import HdrHistogram

from benchmarks import histogram as hist
from benchmarks.native import NativeError, NativePoint, failure_reason, run_tool
from benchmarks.services import split_target
from supernode.debian import DebianPackage, ensure_installed

REDIS_BENCHMARK_PACKAGE = DebianPackage("redis-tools", "redis-benchmark", None)
# Requests per connection of the rate-finding warm-up, and bounds of the measured run.
WARMUP_REQUESTS_PER_CLIENT = 20
MIN_REQUESTS = 200
MAX_REQUESTS = 50_000_000
_PROCESS_MARGIN_S = 30.0
_TAIL_CHARS = 2000

_COMPLETED = re.compile(r"^\s*(\d+) requests completed in ([\d.]+) seconds", re.M)
_THROUGHPUT = re.compile(r"throughput summary: ([\d.]+) requests per second")
_PERCENTILE = re.compile(r"^([\d.]+)% <= ([\d.]+) milliseconds \(cumulative count (\d+)\)", re.M)


# ---------------------------------------------------------------------- pure


def redis_benchmark_argv(
    binary: str, target: str, command: Sequence[str], clients: int, requests: int
) -> list[str]:
    """``requests`` of ``command`` from ``clients`` connections, one request in flight each."""
    if clients < 1 or requests < 1 or not command:
        raise ValueError(f"need clients >= 1, requests >= 1, a command: {clients} {requests}")
    host, port = split_target(target)
    return [
        binary, "-h", host, "-p", str(port),
        "-c", str(clients), "-n", str(requests), "-P", "1",
        *command,
    ]  # fmt: skip


@dataclass(frozen=True)
class BenchmarkOutput:
    done: int
    seconds: float  # as printed (two decimals)
    req_per_s: float
    histogram: HdrHistogram


def latency_histogram(percentile_lines: Sequence[tuple[float, int]]) -> HdrHistogram:
    """The suite's histogram from (latency ms, cumulative count) lines in order: each
    line's new requests recorded at its latency."""
    histogram = hist.new_histogram()
    counted = 0
    for latency_ms, cumulative in percentile_lines:
        if cumulative > counted:
            histogram.record_value(max(1, round(latency_ms * 1000)), cumulative - counted)
            counted = cumulative
    return histogram


def parse_output(stdout: str) -> BenchmarkOutput:
    """Read redis-benchmark's report of one command; NativeError if a part is missing."""
    completed, throughput = _COMPLETED.search(stdout), _THROUGHPUT.search(stdout)
    section = stdout.split("Latency by percentile distribution:", 1)
    if completed is None or throughput is None or len(section) < 2:
        raise NativeError(f"no redis-benchmark report in its output:\n{stdout[-_TAIL_CHARS:]}")
    distribution = section[1].split("\n\n", 1)[0]
    lines = [(float(m.group(2)), int(m.group(3))) for m in _PERCENTILE.finditer(distribution)]
    done = int(completed.group(1))
    histogram = latency_histogram(lines)
    if histogram.get_total_count() != done:
        raise NativeError(
            f"redis-benchmark's distribution counts {histogram.get_total_count()} requests "
            f"but it completed {done}"
        )
    return BenchmarkOutput(done, float(completed.group(2)), float(throughput.group(1)), histogram)


@dataclass(frozen=True)
class RedisCounts:
    """What Redis counted of one command, and of the keys it read."""

    calls: int
    failed: int  # failed_calls + rejected_calls
    hits: int
    misses: int

    def __sub__(self, before: RedisCounts) -> RedisCounts:
        return RedisCounts(
            self.calls - before.calls,
            self.failed - before.failed,
            self.hits - before.hits,
            self.misses - before.misses,
        )


def redis_counts(
    commandstats: dict[str, object], stats: dict[str, object], command: str
) -> RedisCounts:
    """``command``'s counts from ``INFO commandstats`` and ``INFO stats`` as redis-py parses
    them (``cmdstat_get`` -> ``{"calls": ..}``; absent until the command's first call)."""
    entry = commandstats.get(f"cmdstat_{command.lower()}", {})
    if not isinstance(entry, dict):
        raise NativeError(f"INFO commandstats: unreadable entry for {command}: {entry!r}")

    def number(source: dict[str, object], key: str) -> int:
        value = source.get(key, 0)
        return int(value) if isinstance(value, int | float | str) else 0

    return RedisCounts(
        calls=number(entry, "calls"),
        failed=number(entry, "failed_calls") + number(entry, "rejected_calls"),
        hits=number(stats, "keyspace_hits"),
        misses=number(stats, "keyspace_misses"),
    )


def redis_failure(done: int, counted: RedisCounts, keys_per_request: int) -> str | None:
    """Why Redis's counts over warm-up and run do not confirm ``done`` requests, or None."""
    ok = counted.calls - counted.failed
    if counted.failed:
        return f"redis failed or rejected {counted.failed} calls"
    if ok < done:
        return f"redis answered {ok} calls OK but redis-benchmark finished {done}"
    if counted.misses:
        return f"redis missed {counted.misses} keys"
    if counted.hits < done * keys_per_request:
        return f"redis found {counted.hits} keys for {done} x {keys_per_request}"
    return None


def judge_redis(point: NativePoint, counted: RedisCounts, keys_per_request: int) -> NativePoint:
    """``point`` judged by Redis's counts over warm-up and run (module docstring)."""
    return replace(
        point,
        server_ok=counted.calls - counted.failed,
        server_errors=counted.failed,
        failure=point.failure or redis_failure(point.done, counted, keys_per_request),
    )


# ---------------------------------------------------------------------- running it


async def _redis_benchmark(argv: list[str], limit_s: float) -> BenchmarkOutput:
    return parse_output(await run_tool(argv, limit_s))


@dataclass(frozen=True)
class RedisDriver:
    """``redis-benchmark`` sending ``command`` (its arguments: the keys) to ``target``."""

    target: str
    command: tuple[str, ...]  # e.g. ("MGET", "user000000001", ...)
    multiplexed: bool = False

    async def counts(self) -> RedisCounts:
        host, port = split_target(self.target)
        client = aioredis.Redis(host=host, port=port, single_connection_client=True)
        try:
            commandstats = await client.info("commandstats")
            stats = await client.info("stats")
        finally:
            await client.aclose()
        return redis_counts(commandstats, stats, self.command[0])

    async def run(
        self, *, clients: int, streams: int, duration_s: float, warmup_s: float
    ) -> NativePoint:
        """``clients`` connections (``streams`` must be 1: RESP has one request in flight
        per connection), the warm-up sized to find the rate, then ``rate x duration_s``."""
        if streams != 1:
            raise ValueError("redis-benchmark: one request in flight per connection")
        binary = await asyncio.to_thread(ensure_installed, REDIS_BENCHMARK_PACKAGE)
        before = await self.counts()
        warmup = await _redis_benchmark(
            redis_benchmark_argv(
                binary, self.target, self.command, clients,
                max(MIN_REQUESTS, clients * WARMUP_REQUESTS_PER_CLIENT),
            ),
            limit_s=max(warmup_s, 1.0) + _PROCESS_MARGIN_S,
        )  # fmt: skip
        requests = round(min(MAX_REQUESTS, max(MIN_REQUESTS, warmup.req_per_s * duration_s)))
        started = time.monotonic()
        measured = await _redis_benchmark(
            redis_benchmark_argv(binary, self.target, self.command, clients, requests),
            limit_s=10 * duration_s + _PROCESS_MARGIN_S,
        )
        elapsed = time.monotonic() - started
        counted = await self.counts() - before
        latency = hist.summarize(measured.histogram)
        point = NativePoint(
            target=self.target,
            method=self.command[0],
            clients=clients,
            streams=1,
            duration_s=elapsed,
            done=measured.done,
            http_succeeded=measured.done,  # no HTTP: Redis's counts judge it
            req_per_s=measured.req_per_s,
            p50_ms=latency.p50 / 1000,
            p99_ms=latency.p99 / 1000,
            p999_ms=latency.p999 / 1000,
            max_ms=latency.max / 1000,
            histogram=hist.encode(measured.histogram),
            failure=failure_reason(measured.done, measured.done, None),
        )
        return judge_redis(point, counted, len(self.command) - 1)
