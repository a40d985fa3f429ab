"""The run's native phase: every system's workloads again, driven by a native generator.

The Python generator (:mod:`benchmarks.loadgen`) costs about as much CPU per call as a
Python server, so on a small machine it saturates before a fast server does: its tables
once showed our single Lookup ahead of etcd's Range when, per machine, etcd was about five
times ahead. So every workload is measured a second time with a C generator: h2load
(:mod:`benchmarks.native`) for the gRPC servers, ``redis-benchmark``
(:mod:`benchmarks.redis_native`) for Redis, with the same data set, the same batch sizes
and the same requests in flight as the Python saturation point:

1. ``native-unloaded``: one connection, one request at a time.
2. ``native-saturation``: 64 requests in flight for single keys, 16 for batches, over the
   run's connections (h2load multiplexes streams; Redis gets one connection per request in
   flight, as RESP has one request in flight per connection).

A native generator sends one fixed request per point (the keys of :func:`native_keys`,
drawn from the run's key distribution and seed), so single-key points read one user again
and again: a hot-cache figure, where the Python generator's uniform keys also pay cache
misses. Batches ask for many users each time.

Each point is judged by the server's own counters (a native generator sees no answer's
content): a point whose server counted fewer OK answers than the generator completed is a
failed point, never a throughput. Server CPU per operation is the server processes' CPU
over warm-up and measurement divided by the OK answers the server counted over the same
span; the figure also carries the serving processes, for the per-process rate.
"""

from __future__ import annotations

import random
import resource
from collections.abc import Callable, Sequence

from benchmarks import histogram as hist
from benchmarks.figures import Figure
from benchmarks.keys import make_sampler
from benchmarks.native import NativeError, NativePoint
from benchmarks.native_drivers import KeysByBatch, NativeSystem, NativeWorkload
from benchmarks.plan import (
    NATIVE_SATURATION,
    NATIVE_UNLOADED,
    interleave,
    saturation_concurrency,
)
from benchmarks.procstat import total_cpu_seconds
from supernode.debian import PackageError

H2LOAD = "h2load"
REDIS_BENCHMARK = "redis-benchmark"
NATIVE_PHASES = (NATIVE_UNLOADED, NATIVE_SATURATION)
BATCHES = (1, 10, 100)


def native_keys(
    users: int, seed: int, key_dist: str, batches: Sequence[int] = BATCHES
) -> KeysByBatch:
    """The users each batch size's fixed request asks for: the run's key distribution,
    drawn with the run's seed, so every system is asked for the same users."""
    sampler = make_sampler(key_dist, users, random.Random(seed))
    return {batch: [sampler() for _ in range(batch)] for batch in batches}


def native_plan(systems: Sequence[object], keys: KeysByBatch) -> list[NativeWorkload]:
    """Every system's native workloads, interleaved across systems slot by slot like the
    Python generator's; ValueError naming any system the native generator cannot drive."""
    missing = [str(getattr(s, "name", s)) for s in systems if not isinstance(s, NativeSystem)]
    if missing:
        raise ValueError(f"no native workloads for {', '.join(missing)}")
    return interleave([s.native_workloads(keys) for s in systems if isinstance(s, NativeSystem)])


def load_shape(batch: int, multiplexed: bool, connections: int, phase: str) -> tuple[int, int]:
    """(connections, requests in flight per connection) of a native point."""
    if phase == NATIVE_UNLOADED:
        return 1, 1
    in_flight = saturation_concurrency(batch)
    if not multiplexed:
        return in_flight, 1
    clients = min(connections, in_flight)
    return clients, in_flight // clients


def generator_name(workload: NativeWorkload) -> str:
    return H2LOAD if workload.driver.multiplexed else REDIS_BENCHMARK


def children_cpu_seconds() -> float:
    """CPU of our child processes that have ended (the native generator, once it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def native_figure(
    workload: NativeWorkload,
    phase: str,
    point: NativePoint,
    *,
    server_cpu_s: float,
    generator_cpu_s: float,
    server_processes: int,
) -> Figure:
    """A native point as a figure of the run: the throughput is the generator's completed
    requests over the measured duration, unless the server's counts failed it."""
    latency = hist.summarize(hist.decode(point.histogram))
    failed = point.failure is not None
    answered = point.server_ok or 0
    concurrency = point.clients * point.streams
    return Figure(
        system=workload.system,
        workload=workload.workload,
        batch=workload.batch,
        phase=phase,
        mode="closed",
        rate_label=f"c={concurrency}",
        target_rate=None,
        concurrency=concurrency,
        connections=point.clients,
        processes=1,
        duration_s=point.duration_s,
        achieved_rate=0.0 if failed else point.req_per_s,
        keys_per_s=0.0 if failed else point.req_per_s * workload.batch,
        completed=point.done,
        errors=point.server_errors or 0,
        error_kinds={},
        error_example="",
        unsent=0,
        mean_us=latency.mean,
        p50_us=latency.p50,
        p90_us=latency.p90,
        p99_us=latency.p99,
        p999_us=latency.p999,
        max_us=latency.max,
        send_lag_p99_us=0,
        server_cpu_s=server_cpu_s,
        server_cpu_s_per_1000_ops=1000 * server_cpu_s / answered if answered else None,
        generator_cpu_s=generator_cpu_s,
        histogram=point.histogram,
        failure=point.failure,
        generator=generator_name(workload),
        server_processes=server_processes,
        server_ok=point.server_ok,
    )


def unmeasured_figure(workload: NativeWorkload, phase: str, reason: str) -> Figure:
    """A point the generator could not run at all: kept in the report, not hidden."""
    empty = hist.encode(hist.new_histogram())
    point = NativePoint(
        target="", method="", clients=0, streams=0, duration_s=0.0, done=0, http_succeeded=0,
        req_per_s=0.0, p50_ms=0.0, p99_ms=0.0, p999_ms=0.0, max_ms=0.0, histogram=empty,
        failure=reason,
    )  # fmt: skip
    return native_figure(
        workload, phase, point, server_cpu_s=0.0, generator_cpu_s=0.0, server_processes=1
    )


async def measure_point(
    workload: NativeWorkload,
    phase: str,
    pids: Sequence[int],
    *,
    connections: int,
    duration_s: float,
    warmup_s: float,
) -> Figure:
    """One native point of ``workload``, the server CPU of ``pids`` charged to it."""
    clients, streams = load_shape(workload.batch, workload.driver.multiplexed, connections, phase)
    cpu_before, generator_before = total_cpu_seconds(pids), children_cpu_seconds()
    try:
        point = await workload.driver.run(
            clients=clients, streams=streams, duration_s=duration_s, warmup_s=warmup_s
        )
    except (NativeError, PackageError, OSError) as exc:
        return unmeasured_figure(workload, phase, str(exc).strip().splitlines()[-1])
    return native_figure(
        workload,
        phase,
        point,
        server_cpu_s=total_cpu_seconds(pids) - cpu_before,
        generator_cpu_s=children_cpu_seconds() - generator_before,
        server_processes=max(1, len(pids)),
    )


async def measure_native(
    workloads: Sequence[NativeWorkload],
    pids_of: Callable[[str], Sequence[int]],
    record: Callable[[Figure], None],
    *,
    connections: int,
    duration_s: float,
    warmup_s: float,
    phases: Sequence[str] = NATIVE_PHASES,
) -> None:
    """The native ``phases``, each over ``workloads`` (already interleaved across systems);
    every figure goes to ``record`` as soon as it is measured. A workload whose precheck
    fails gets failed points saying why, and is not loaded."""
    refused = {workload: await precheck(workload) for workload in workloads}
    for phase in phases:
        for workload in workloads:
            reason = refused[workload]
            if reason is not None:
                record(unmeasured_figure(workload, phase, reason))
                continue
            figure = await measure_point(
                workload, phase, pids_of(workload.system),
                connections=connections, duration_s=duration_s, warmup_s=warmup_s,
            )  # fmt: skip
            record(figure)


async def precheck(workload: NativeWorkload) -> str | None:
    """Why ``workload`` cannot be measured (its precheck failed), or None."""
    if workload.precheck is None:
        return None
    try:
        await workload.precheck()
    except Exception as exc:  # any failure of the check is the workload's failure
        return f"precheck failed: {exc}"
    return None
