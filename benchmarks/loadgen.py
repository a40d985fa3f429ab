"""Load generation: open loop at a target rate, closed loop to saturation, and ping-pong.

Open loop (the latency-vs-throughput curve): requests fall due at scheduled times
(constant spacing or Poisson arrivals) whatever the server does. A pool of workers serves
them: each idle worker claims the next due time from a shared schedule and sends when it
falls due. When every worker is busy (waiting on the server), due requests pile up and are
sent late; their latency is measured from the *scheduled* time, so a stalled server shows
up in every request that should have been sent during the stall, not only in the one in
flight (no coordinated omission). A request whose worker was already idle and waiting is
measured from its actual send: the event loop's timers are only accurate to ~1 ms
(uvloop), and that slack is the generator's, not the server's. It is recorded separately
as the send lag (with the generator's CPU time, it shows when the generator itself falls
behind), so no CPU is burnt spinning for precise send times on a machine the server shares.

Closed loop (saturation): ``concurrency`` requests always in flight, latency from each
send; the completion rate is the system's maximum throughput at that concurrency.
Ping-pong is the closed loop with one request in flight: unloaded latency.

Several generator processes (spawned once, reused for every point) each run a uvloop event
loop with their share of connections, in-flight requests and rate, then send back their
HdrHistograms, which are merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import multiprocessing
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from time import perf_counter
from typing import Any

from benchmarks import histogram as hist
from benchmarks.keys import UNIFORM, make_sampler
from benchmarks.systems.base import ClientSpec, LookupClient, make_client

OPEN = "open"
CLOSED = "closed"
MODES = (OPEN, CLOSED)
CONSTANT = "constant"
POISSON = "poisson"
ARRIVALS = (CONSTANT, POISSON)

# Generator processes start together this long after the last one has connected.
_START_DELAY_S = 0.1
_SETUP_TIMEOUT_S = 60.0

ClientFactory = Callable[[ClientSpec], LookupClient]


@dataclass(frozen=True)
class LoadSpec:
    """One measurement point. Counts and rates are totals over all generator processes."""

    client: ClientSpec
    mode: str
    duration_s: float
    warmup_s: float = 0.0
    rate: float = 0.0  # open loop: requests per second to schedule
    concurrency: int = 1  # closed loop: requests in flight; open loop: the most in flight
    connections: int = 1
    processes: int = 1
    arrivals: str = POISSON
    key_dist: str = UNIFORM
    users: int = 1
    seed: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {MODES}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals {self.arrivals!r}: expected one of {ARRIVALS}")
        if self.mode == OPEN and self.rate <= 0:
            raise ValueError("open loop needs a positive rate")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("duration must be positive and warmup not negative")
        if min(self.concurrency, self.connections, self.processes, self.users) < 1:
            raise ValueError("concurrency, connections, processes and users must be >= 1")
        if self.processes > self.concurrency:
            raise ValueError("every generator process needs at least one request in flight")

    @property
    def drain_s(self) -> float:
        """How long past the end an overloaded open loop may still send late requests."""
        return max(1.0, self.duration_s / 2)


def pingpong(client: ClientSpec, duration_s: float, **options: Any) -> LoadSpec:
    """Unloaded latency: one connection, one request at a time, one process."""
    return LoadSpec(
        client, CLOSED, duration_s, concurrency=1, connections=1, processes=1, **options
    )


# ---------------------------------------------------------------------- schedules


def constant_schedule(rate: float, start: float, end: float, phase: float = 0.0) -> Iterator[float]:
    """Due times ``1/rate`` apart in ``[start, end)``, shifted by ``phase`` of a gap."""
    interval = 1.0 / rate
    index = 0
    while (due := start + (index + phase) * interval) < end:
        yield due
        index += 1


def poisson_schedule(rate: float, start: float, end: float, rng: random.Random) -> Iterator[float]:
    """Due times of a Poisson process of ``rate`` per second in ``[start, end)``."""
    due = start + rng.expovariate(rate)
    while due < end:
        yield due
        due += rng.expovariate(rate)


def share(total: int, index: int, parts: int) -> int:
    """Process ``index``'s part of ``total`` split as evenly as integers allow."""
    return total // parts + (1 if index < total % parts else 0)


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class PointResult:
    """What one point measured; also what each process reports before merging."""

    histogram: str  # encoded HdrHistogram of latencies, µs
    send_lag: str  # encoded HdrHistogram of (send - due) in the open loop, µs
    completed: int  # measured requests that succeeded
    total_completed: int  # including warm-up: the divisor of server CPU per request
    unsent: int  # open loop: due but still unsent at the drain deadline
    errors: dict[str, int]
    error_examples: dict[str, str]
    elapsed_s: float  # from the end of warm-up to the last measured completion
    generator_cpu_s: float

    @property
    def achieved_rate(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def merge_results(parts: list[PointResult]) -> PointResult:
    """One result from every process's: histograms and counts add, the window is the longest."""
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for part in parts:
        errors.update(part.errors)
        for kind, text in part.error_examples.items():
            examples.setdefault(kind, text)
    return PointResult(
        histogram=hist.encode(hist.merge(p.histogram for p in parts)),
        send_lag=hist.encode(hist.merge(p.send_lag for p in parts)),
        completed=sum(p.completed for p in parts),
        total_completed=sum(p.total_completed for p in parts),
        unsent=sum(p.unsent for p in parts),
        errors=dict(errors),
        error_examples=examples,
        elapsed_s=max(p.elapsed_s for p in parts),
        generator_cpu_s=sum(p.generator_cpu_s for p in parts),
    )


def error_kind(exc: BaseException) -> str:
    """``AioRpcError:UNAVAILABLE`` for gRPC failures, else the exception's class name."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return f"{type(exc).__name__}:{code().name}"
        except Exception:  # an unrelated .code() method: fall back to the class name
            pass
    return type(exc).__name__


@dataclass
class _Recorder:
    """Counts and histograms of one process; requests due before ``measure_from`` are warm-up."""

    measure_from: float
    latency: Any = field(default_factory=hist.new_histogram)
    send_lag: Any = field(default_factory=hist.new_histogram)
    completed: int = 0
    total_completed: int = 0
    unsent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    last_done: float = 0.0

    def ok(self, due: float, since: float, sent: float, done: float) -> None:
        """A success due at ``due``, sent at ``sent``; its latency counts from ``since``."""
        self.total_completed += 1
        if due < self.measure_from:
            return
        self.completed += 1
        hist.record_us(self.latency, (done - since) * 1e6)
        hist.record_us(self.send_lag, (sent - due) * 1e6)
        self.last_done = max(self.last_done, done)

    def error(self, due: float, exc: Exception) -> None:
        if due < self.measure_from:
            return
        kind = error_kind(exc)
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, str(exc)[:300])

    def missed(self, due: float, now: float) -> None:
        """A request never sent: its latency is at least its lateness so far."""
        if due < self.measure_from:
            return
        self.unsent += 1
        hist.record_us(self.latency, (now - due) * 1e6)

    def result(self, measure_until: float, cpu_s: float) -> PointResult:
        return PointResult(
            histogram=hist.encode(self.latency),
            send_lag=hist.encode(self.send_lag),
            completed=self.completed,
            total_completed=self.total_completed,
            unsent=self.unsent,
            errors=dict(self.errors),
            error_examples=self.error_examples,
            elapsed_s=max(measure_until, self.last_done) - self.measure_from,
            generator_cpu_s=cpu_s,
        )


# ---------------------------------------------------------------------- one process's load


async def _open_worker(
    client: LookupClient,
    draw: Callable[[], list[int]],
    schedule: Iterator[float],
    recorder: _Recorder,
    claim_until: float,
) -> None:
    for due in schedule:  # shared by all workers: an idle worker claims the next due time
        claimed = perf_counter()
        if claimed > claim_until:
            recorder.missed(due, claimed)
            continue
        keys = draw()
        if due > claimed:
            await asyncio.sleep(due - claimed)
        sent = perf_counter()
        # Due before a worker was free: it waited on the server, count from the due time.
        since = due if due <= claimed else sent
        try:
            await client.lookup(keys)
        except Exception as exc:
            recorder.error(due, exc)
        else:
            recorder.ok(due, since, sent, perf_counter())


async def _closed_worker(
    client: LookupClient,
    draw: Callable[[], list[int]],
    recorder: _Recorder,
    start: float,
    end: float,
) -> None:
    await asyncio.sleep(max(0.0, start - perf_counter()))
    while True:
        keys = draw()
        sent = perf_counter()
        if sent >= end:
            return
        try:
            await client.lookup(keys)
        except Exception as exc:
            recorder.error(sent, exc)
        else:
            recorder.ok(sent, sent, sent, perf_counter())


async def run_load(
    spec: LoadSpec, clients: list[LookupClient], index: int, start: float
) -> PointResult:
    """Process ``index``'s share of ``spec``, starting at ``start`` (perf_counter time)."""
    rng = random.Random(f"{spec.seed}/{index}/{spec.client.workload}")
    sample = make_sampler(spec.key_dist, spec.users, rng)
    batch = spec.client.batch

    def draw() -> list[int]:
        return [sample() for _ in range(batch)]

    measure_from = start + spec.warmup_s
    end = measure_from + spec.duration_s
    recorder = _Recorder(measure_from)
    in_flight = share(spec.concurrency, index, spec.processes)
    cpu_before = time.process_time()
    if spec.mode == OPEN:
        rate = spec.rate / spec.processes
        schedule = (
            constant_schedule(rate, start, end, phase=index / spec.processes)
            if spec.arrivals == CONSTANT
            else poisson_schedule(rate, start, end, rng)
        )
        claim_until = end + spec.drain_s
        workers = [
            _open_worker(clients[w % len(clients)], draw, schedule, recorder, claim_until)
            for w in range(in_flight)
        ]
    else:
        workers = [
            _closed_worker(clients[w % len(clients)], draw, recorder, start, end)
            for w in range(in_flight)
        ]
    await asyncio.gather(*workers)
    return recorder.result(end, time.process_time() - cpu_before)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect, then keep what exists out of collections until the run is over.

    Entered before a run's start time is fixed: a full collection takes ~0.1 s in a test
    process and longer in a loaded generator, and done after the start was fixed it made
    every generator start late by that much (and swallowed a short window whole).
    """
    gc.collect()
    gc.freeze()  # what exists now is never garbage
    try:
        yield
    finally:
        gc.unfreeze()


async def _connect(spec: LoadSpec, index: int, factory: ClientFactory) -> list[LookupClient]:
    count = max(1, min(share(spec.connections, index, spec.processes),
                       share(spec.concurrency, index, spec.processes)))  # fmt: skip
    clients = [factory(spec.client) for _ in range(count)]
    await asyncio.gather(*(client.connect() for client in clients))
    return clients


async def _close(clients: list[LookupClient]) -> None:
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def run_in_process(spec: LoadSpec, factory: ClientFactory = make_client) -> PointResult:
    """Run ``spec`` in this process's event loop as a single generator (tests, debugging)."""
    spec = dataclasses.replace(spec, processes=1)
    clients = await _connect(spec, 0, factory)
    try:
        with frozen_heap():
            return await run_load(spec, clients, 0, perf_counter() + 0.01)
    finally:
        await _close(clients)


# ---------------------------------------------------------------------- generator processes


@dataclass(frozen=True)
class _Failure:
    where: str
    text: str


_READY = "ready"


async def _serve_points(conn: Connection, factory: ClientFactory = make_client) -> None:
    """A generator process: for each point, connect, report ready, wait for the start, run."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            message = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            return
        if message is None:
            return
        spec, index = message
        try:
            clients = await _connect(spec, index, factory)
        except Exception:
            conn.send(_Failure(f"generator {index} connect", traceback.format_exc()))
            continue
        reply: PointResult | _Failure | None = None
        try:
            with frozen_heap():
                conn.send(_READY)
                start_wall = await loop.run_in_executor(None, conn.recv)
                if start_wall is not None:
                    start = perf_counter() + (start_wall - time.time())
                    reply = await run_load(spec, clients, index, start)
        except Exception:
            reply = _Failure(f"generator {index} run", traceback.format_exc())
        finally:
            await _close(clients)
        if reply is not None:
            conn.send(reply)


def _process_main(conn: Connection, factory: ClientFactory = make_client) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_serve_points(conn, factory))
    else:
        uvloop.run(_serve_points(conn, factory))


class LoadgenError(RuntimeError):
    """A point could not be measured: a generator process failed, died or stopped answering."""


class _GeneratorLost(LoadgenError):
    """A generator process died or stopped answering: the pool must be respawned."""


class GeneratorPool:
    """Generator processes spawned once and reused for every point of a run.

    Spawning costs a second of imports per process; a full run has over a hundred points.
    A process that dies or stops answering gets the whole pool respawned, so a late answer
    can never be mistaken for the next point's.

    ``factory`` builds each process's clients from a point's :class:`ClientSpec` (default:
    the suite's systems). It is sent to spawned processes, so it must be a module-level
    function.
    """

    def __init__(self, processes: int, factory: ClientFactory = make_client) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._factory = factory
        self._size = processes
        self._conns: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._spawn()

    def _spawn(self) -> None:
        for index in range(self._size):
            parent, child = self._context.Pipe()
            process = self._context.Process(
                target=_process_main,
                args=(child, self._factory),
                name=f"loadgen-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)

    @property
    def size(self) -> int:
        return self._size

    def _receive(self, index: int, timeout: float) -> Any:
        conn = self._conns[index]
        try:
            if not conn.poll(timeout):
                raise _GeneratorLost(f"generator {index} silent for {timeout:.0f} s")
            return conn.recv()
        except (EOFError, OSError) as exc:
            raise _GeneratorLost(f"generator {index} died: {exc}") from exc

    def _send(self, index: int, message: object) -> None:
        try:
            self._conns[index].send(message)
        except OSError as exc:
            raise _GeneratorLost(f"generator {index} died: {exc}") from exc

    def run(self, spec: LoadSpec) -> PointResult:
        """Run ``spec`` on the first ``spec.processes`` generators; LoadgenError if it failed."""
        if spec.processes > self.size:
            raise ValueError(f"{spec.processes} processes asked, the pool has {self.size}")
        try:
            return self._run(spec, range(spec.processes))
        except _GeneratorLost:
            self._shutdown()
            self._spawn()
            raise

    def _run(self, spec: LoadSpec, used: range) -> PointResult:
        for index in used:
            self._send(index, (spec, index))
        replies = [self._receive(index, _SETUP_TIMEOUT_S) for index in used]
        failures = [reply for reply in replies if isinstance(reply, _Failure)]
        start_wall = None if failures else time.time() + _START_DELAY_S
        for index, reply in zip(used, replies, strict=True):
            if reply == _READY:
                self._send(index, start_wall)  # None: the point is off, close the clients
        if failures:
            raise LoadgenError("\n".join(f"{f.where}:\n{f.text}" for f in failures))
        timeout = _START_DELAY_S + spec.warmup_s + spec.duration_s + spec.drain_s + 60
        results = [self._receive(index, timeout) for index in used]
        failures = [result for result in results if isinstance(result, _Failure)]
        if failures:
            raise LoadgenError("\n".join(f"{f.where}:\n{f.text}" for f in failures))
        return merge_results(results)

    def _shutdown(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._processes.clear()

    def close(self) -> None:
        self._shutdown()

    def __enter__(self) -> GeneratorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
