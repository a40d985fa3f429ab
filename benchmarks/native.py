"""Drive a unary gRPC method with ``h2load``, a native HTTP/2 load generator.

The suite's Python generator (:mod:`benchmarks.loadgen`) costs about as much CPU per call as
the server does, so on a small machine it measures itself as much as the server. ``h2load``
(Debian's ``nghttp2-client``, installed on first use through :mod:`supernode.debian`) is C:
it sends one fixed body per request, which for a unary gRPC call is the whole request, the
gRPC frame (:func:`grpc_frame`) POSTed to ``/package.Service/Method`` with
``content-type: application/grpc`` and ``te: trailers``.

It sees only HTTP, and gRPC answers an error with HTTP 200 and ``grpc-status`` in trailers,
so its "succeeded" says nothing about the calls. The server's own counters do: a point is
judged against a call counter scraped before and after (:func:`judge`):
``supernode_rpc_requests_total`` by default, any counter with a method and a code label
(:class:`CallCounter`: etcd's ``grpc_server_handled_total``, the echo baseline's). A point
the server did not answer OK to the last call is failed, never a throughput.

What h2load 1.52 does (measured, and what the parsers rely on):

* ``--log-file`` holds one line per request done in the main duration: start (µs since the
  epoch), HTTP status, µs until the end of the response. Warm-up requests are not logged, so
  no window is cut: the log's lines equal the summary's ``done`` (checked).
* ``req/s`` in its summary is ``done`` over the main duration (``-D``), warm-up excluded.
* The server's counters also count the warm-up calls and those in flight when h2load
  stopped: OK calls counted exceed ``done``; fewer means some call was not answered OK.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hdrh.histogram import HdrHistogram

from benchmarks import histogram as hist
from benchmarks.metrics_scrape import metric, scrape
from supernode.debian import H2LOAD_PACKAGE, ensure_installed

Metadata = Sequence[tuple[str, str]]

GRPC_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-type", "application/grpc"),
    ("te", "trailers"),
)
RPC_REQUESTS = "supernode_rpc_requests"  # supernode.metrics.RpcCollector
# h2load's own set-up and shutdown on top of warm-up + duration; past it, it is stuck.
_PROCESS_MARGIN_S = 30.0
_TAIL_CHARS = 2000


class NativeError(RuntimeError):
    """h2load could not run or its output could not be read (the message has its output)."""


# ---------------------------------------------------------------------- pure: the request


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag 0, 4-byte big-endian length, body."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_url(target: str, method_path: str) -> str:
    """``http://host:port/package.Service/Method`` (``method_path`` with or without '/')."""
    return f"http://{target}/{method_path.lstrip('/')}"


def method_label(method_path: str) -> str:
    """The ``method`` label the supernode counts a public call under: the method's name.

    (Calls a cluster node forwards to a peer count there as ``cluster.Lookup`` and so on,
    so a node's ``Lookup`` is only what clients sent it.)
    """
    return method_path.rstrip("/").rsplit("/", 1)[-1]


def _duration(seconds: float) -> str:
    """h2load takes whole units; milliseconds keep a fractional second."""
    return f"{round(seconds * 1000)}ms"


def h2load_argv(
    binary: str,
    url: str,
    body_path: Path,
    headers: Metadata,
    duration_s: float,
    warmup_s: float,
    clients: int,
    streams: int,
    threads: int,
    log_path: Path,
) -> list[str]:
    """The h2load command line of one timed point (``-D``; no request count).

    ``clients`` connections, each with up to ``streams`` calls in flight, over ``threads``
    native threads (h2load refuses fewer clients than threads, so that is a ValueError here).
    """
    if duration_s <= 0 or warmup_s < 0:
        raise ValueError(f"duration {duration_s} s must be > 0 and warm-up {warmup_s} s >= 0")
    if clients < 1 or streams < 1 or not 1 <= threads <= clients:
        raise ValueError(f"need c >= t >= 1 and m >= 1: c={clients} t={threads} m={streams}")
    argv = [
        binary,
        "-c", str(clients),
        "-m", str(streams),
        "-t", str(threads),
        "-D", _duration(duration_s),
    ]  # fmt: skip
    if warmup_s > 0:
        argv.append(f"--warm-up-time={_duration(warmup_s)}")
    argv += [f"--log-file={log_path}", "-d", str(body_path)]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    return argv


# ---------------------------------------------------------------------- pure: the output


@dataclass(frozen=True)
class H2loadSummary:
    """The counts of h2load's closing summary (``done`` = finished with any status)."""

    finished_s: float  # wall time, warm-up included
    req_per_s: float  # done / main duration
    total: int
    started: int
    done: int
    succeeded: int  # HTTP 2xx/3xx: a gRPC error is one too
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int


_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.M)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_summary(stdout: str) -> H2loadSummary:
    """Read the summary h2load prints at the end; NativeError if a line is missing."""
    finished, requests, status = (p.search(stdout) for p in (_FINISHED, _REQUESTS, _STATUS))
    if finished is None or requests is None or status is None:
        raise NativeError(f"no h2load summary in its output:\n{stdout[-_TAIL_CHARS:]}")
    total, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    s2, s3, s4, s5 = map(int, status.groups())
    return H2loadSummary(
        finished_s=float(finished.group(1)) * _UNIT_S[finished.group(2)],
        req_per_s=float(finished.group(3)),
        total=total,
        started=started,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=s2,
        status_3xx=s3,
        status_4xx=s4,
        status_5xx=s5,
    )


@dataclass(frozen=True)
class LogLine:
    """One request of ``--log-file``."""

    start_us: int  # since the epoch
    status: int  # HTTP
    latency_us: int  # start to end of response


def parse_log(text: str) -> list[LogLine]:
    """Every request of an h2load log (columns past the third, which it may add, ignored)."""
    lines = []
    for number, row in enumerate(text.splitlines(), 1):
        if not row.strip():
            continue
        columns = row.split("\t")
        try:
            lines.append(LogLine(int(columns[0]), int(columns[1]), int(columns[2])))
        except (IndexError, ValueError):
            raise NativeError(f"h2load log line {number} unreadable: {row!r}") from None
    return lines


def latency_histogram(lines: Iterable[LogLine]) -> HdrHistogram:
    """The suite's histogram shape (:mod:`benchmarks.histogram`) of every request's latency,
    so a native point merges with others and reads like a Python generator's."""
    histogram = hist.new_histogram()
    for line in lines:
        hist.record_us(histogram, line.latency_us)
    return histogram


# ---------------------------------------------------------------------- pure: the point


@dataclass(frozen=True)
class ServerCounts:
    """A server's count of one method's calls: answered OK, answered another code, and
    cancelled by the caller (h2load cancels the calls it has in flight when it stops: not
    the server's failure, and at most the streams it had open)."""

    ok: int
    errors: int
    cancelled: int = 0

    def __sub__(self, before: ServerCounts) -> ServerCounts:
        return ServerCounts(
            self.ok - before.ok, self.errors - before.errors, self.cancelled - before.cancelled
        )

    def __add__(self, other: ServerCounts) -> ServerCounts:
        return ServerCounts(
            self.ok + other.ok, self.errors + other.errors, self.cancelled + other.cancelled
        )


@dataclass(frozen=True)
class CallCounter:
    """Where a server counts its calls in its Prometheus exposition: a counter with one
    label naming the method and one naming the status code, and the code that means OK."""

    name: str
    method_label: str = "method"
    code_label: str = "code"
    ok_code: str = "OK"
    cancelled_code: str = "CANCELLED"


SUPERNODE_CALLS = CallCounter(RPC_REQUESTS)
# go-grpc-prometheus, which etcd serves on its client URL's /metrics (3.4 and later).
GRPC_GO_CALLS = CallCounter("grpc_server_handled", "grpc_method", "grpc_code", "OK", "Canceled")


def server_counts(
    metrics_text: str, method: str, counter: CallCounter = SUPERNODE_CALLS
) -> ServerCounts:
    """``method``'s calls in a server's exposition (``method`` as :func:`method_label`)."""
    method_only = {counter.method_label: method}
    ok = metric(metrics_text, counter.name, **method_only, **{counter.code_label: counter.ok_code})
    cancelled = metric(
        metrics_text, counter.name, **method_only, **{counter.code_label: counter.cancelled_code}
    )
    every = metric(metrics_text, counter.name, **method_only)
    return ServerCounts(round(ok), round(every - ok - cancelled), round(cancelled))


def failure_reason(done: int, http_succeeded: int, server: ServerCounts | None) -> str | None:
    """Why a point is not a throughput, or None if it is.

    ``server`` is the server's count over the run (None: not counted, judged on HTTP only).
    It includes warm-up calls and those h2load left in flight, so OK >= done when all went
    well; fewer OK, or any error at all, fails the point.
    """
    if done == 0:
        return "no request completed"
    if http_succeeded < done:
        return f"{done - http_succeeded} of {done} requests failed at the HTTP level"
    if server is not None and server.errors > 0:
        return f"the server answered {server.errors} calls with a gRPC error"
    if server is not None and server.ok < done:
        return f"the server answered {server.ok} calls OK but h2load finished {done}"
    return None


@dataclass(frozen=True)
class NativePoint:
    """One h2load point (or several merged): what it did and, once judged, what the server
    says it did. Latencies are from send to end of response, in ms."""

    target: str  # host:port; merged: comma-separated
    method: str  # method label, e.g. "Lookup"
    clients: int
    streams: int  # per client
    duration_s: float  # the measured duration (-D), warm-up excluded
    done: int
    http_succeeded: int
    req_per_s: float  # done / duration_s, as h2load computes it
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    histogram: str = field(repr=False)  # encoded HdrHistogram, µs (benchmarks.histogram)
    server_ok: int | None = None  # set by judge(): calls the server answered OK
    server_errors: int | None = None  # ... and answered with another code
    failure: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


def point_from(
    summary: H2loadSummary,
    histogram: HdrHistogram,
    *,
    target: str,
    method: str,
    clients: int,
    streams: int,
    duration_s: float,
) -> NativePoint:
    """A point from h2load's summary and its log's latencies (not yet judged by the server)."""
    latency = hist.summarize(histogram)
    point = NativePoint(
        target=target,
        method=method,
        clients=clients,
        streams=streams,
        duration_s=duration_s,
        done=summary.done,
        http_succeeded=summary.succeeded,
        req_per_s=summary.req_per_s,
        p50_ms=latency.p50 / 1000,
        p99_ms=latency.p99 / 1000,
        p999_ms=latency.p999 / 1000,
        max_ms=latency.max / 1000,
        histogram=hist.encode(histogram),
    )
    return replace(point, failure=failure_reason(point.done, point.http_succeeded, None))


def judge(point: NativePoint, server: ServerCounts) -> NativePoint:
    """``point`` with the server's count over its run, failed unless every call was OK."""
    reason = point.failure or failure_reason(point.done, point.http_succeeded, server)
    return replace(point, server_ok=server.ok, server_errors=server.errors, failure=reason)


def merge_points(points: Sequence[NativePoint]) -> NativePoint:
    """Several concurrent points as one: counts and req/s add, latency histograms merge (the
    percentiles of all requests together), failed if any part failed."""
    if not points:
        raise ValueError("no points to merge")
    histogram = hist.merge(p.histogram for p in points)
    latency = hist.summarize(histogram)
    judged = all(p.server_ok is not None for p in points)
    failures = [f"{p.target}: {p.failure}" for p in points if p.failure is not None]
    return NativePoint(
        target=",".join(p.target for p in points),
        method=",".join(dict.fromkeys(p.method for p in points)),
        clients=sum(p.clients for p in points),
        streams=max(p.streams for p in points),
        duration_s=max(p.duration_s for p in points),
        done=sum(p.done for p in points),
        http_succeeded=sum(p.http_succeeded for p in points),
        req_per_s=sum(p.req_per_s for p in points),
        p50_ms=latency.p50 / 1000,
        p99_ms=latency.p99 / 1000,
        p999_ms=latency.p999 / 1000,
        max_ms=latency.max / 1000,
        histogram=hist.encode(histogram),
        server_ok=sum(p.server_ok or 0 for p in points) if judged else None,
        server_errors=sum(p.server_errors or 0 for p in points) if judged else None,
        failure="; ".join(failures) or None,
    )


# ---------------------------------------------------------------------- running it


async def run_h2load(
    target: str,
    method_path: str,
    request: bytes,
    *,
    metadata: Metadata = (),
    duration_s: float,
    warmup_s: float = 0.0,
    clients: int,
    streams: int,
    threads: int = 1,
) -> NativePoint:
    """Call ``method_path`` on ``target`` with the serialized ``request`` for ``duration_s``
    (after ``warmup_s`` unmeasured) from ``clients`` connections of ``streams`` calls each.

    Judged on HTTP only: the caller counts the server's answers (:func:`judge`, or use
    :func:`run_many`, which does). NativeError if h2load fails or hangs.
    """
    binary = await asyncio.to_thread(ensure_installed, H2LOAD_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="h2load-") as scratch:
        body, log = Path(scratch) / "body", Path(scratch) / "log.tsv"
        body.write_bytes(grpc_frame(request))
        argv = h2load_argv(
            binary, grpc_url(target, method_path), body, [*GRPC_HEADERS, *metadata],
            duration_s, warmup_s, clients, streams, threads, log,
        )  # fmt: skip
        stdout = await run_tool(argv, limit_s=duration_s + warmup_s + _PROCESS_MARGIN_S)
        summary = parse_summary(stdout)
        lines = await asyncio.to_thread(lambda: parse_log(log.read_text()))
    if len(lines) != summary.done:
        raise NativeError(f"h2load logged {len(lines)} requests but says {summary.done} done")
    return point_from(
        summary,
        latency_histogram(lines),
        target=target,
        method=method_label(method_path),
        clients=clients,
        streams=streams,
        duration_s=duration_s,
    )


async def run_tool(argv: list[str], limit_s: float) -> str:
    """A native generator's output (stdout and stderr); NativeError (with its output) on a
    non-zero exit or past ``limit_s``, the process killed then."""
    tool = Path(argv[0]).name
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(limit_s):
            out, _ = await process.communicate()
    except TimeoutError:
        raise NativeError(f"{tool} still running after {limit_s:.0f} s: {argv}") from None
    finally:
        if process.returncode is None:  # timed out or cancelled: never leave it running
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise NativeError(f"{tool} exited with {process.returncode}:\n{text[-_TAIL_CHARS:]}")
    return text


@dataclass(frozen=True)
class NativeTarget:
    """One server to load: where, which method with which request, and where its counters
    are (None: not counted, the point judged on HTTP only, which a gRPC error passes)."""

    target: str
    method_path: str
    request: bytes
    metadata: tuple[tuple[str, str], ...] = ()
    metrics_url: str | None = None
    counter: CallCounter = SUPERNODE_CALLS


@dataclass(frozen=True)
class NativeRun:
    """The points of targets loaded at once, and all of them as one."""

    points: list[NativePoint]
    total: NativePoint


def metrics_url(address: str) -> str:
    """The scrape URL of a supernode's ``--metrics-listen`` address (``host:port``)."""
    return f"http://{address}/metrics"


async def scrape_counts(
    url: str, method: str, counter: CallCounter = SUPERNODE_CALLS
) -> ServerCounts:
    return server_counts(await asyncio.to_thread(scrape, url), method, counter)


async def run_many(
    targets: Sequence[NativeTarget],
    *,
    duration_s: float,
    warmup_s: float = 0.0,
    clients: int,
    streams: int,
    threads: int = 1,
) -> NativeRun:
    """One h2load per target, all at once (each with ``clients`` x ``streams``), every counted
    target judged by its server's count over the run, and the merged total.

    One target per server when any is counted: a server's counters cover all its callers, so
    two h2loads on one server could not each be judged (ValueError for a repeated address or
    metrics URL; a server behind two addresses is the caller's to avoid).
    """
    counted = [t.metrics_url for t in targets if t.metrics_url is not None]
    addresses = [t.target for t in targets]
    if len(set(counted)) != len(counted) or (counted and len(set(addresses)) != len(addresses)):
        raise ValueError("two counted targets are one server: one target per server")

    async def counts(t: NativeTarget) -> ServerCounts | None:
        if t.metrics_url is None:
            return None
        return await scrape_counts(t.metrics_url, method_label(t.method_path), t.counter)

    before = await asyncio.gather(*(counts(t) for t in targets))
    runs = [
        asyncio.create_task(
            run_h2load(
                t.target, t.method_path, t.request, metadata=t.metadata,
                duration_s=duration_s, warmup_s=warmup_s,
                clients=clients, streams=streams, threads=threads,
            )
        )
        for t in targets
    ]  # fmt: skip
    try:
        points = await asyncio.gather(*runs)
    except BaseException:  # one failed (or we are cancelled): stop the other h2loads too
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        raise
    after = await asyncio.gather(*(counts(t) for t in targets))
    judged = [
        point if b is None or a is None else judge(point, a - b)
        for point, b, a in zip(points, before, after, strict=True)
    ]
    return NativeRun(judged, merge_points(judged))
