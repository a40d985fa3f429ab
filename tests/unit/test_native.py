"""The native load generator's pure parts: the gRPC frame, h2load's command line, reading its
summary (a real h2load 1.52 run's output) and log, and the rule that fails a point."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import histogram as hist
from benchmarks.native import (
    GRPC_HEADERS,
    H2loadSummary,
    LogLine,
    NativeError,
    NativeTarget,
    ServerCounts,
    failure_reason,
    grpc_frame,
    grpc_url,
    h2load_argv,
    judge,
    latency_histogram,
    merge_points,
    method_label,
    parse_log,
    parse_summary,
    point_from,
    run_many,
    server_counts,
)

# h2load -c 2 -m 4 -t 1 -D 2 --warm-up-time 1 against a single supernode's Lookup.
REAL_OUTPUT = """\
starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 1s of warm-up time and 2s of \
main duration for measurements.
Warm-up started for thread #0.
progress: 50% of clients started
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 3.00s, 8386.00 req/s, 5.15MB/s
requests: 16772 total, 16772 started, 16772 done, 16772 succeeded, 0 failed, 0 errored, \
0 timeout
status codes: 16772 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 10.30MB (10801057) total, 72.84KB (74586) headers (space savings 96.29%), \
13.84MB (14515020) data
                     min         max         mean         sd        +/- sd
time for request:      199us      6.00ms       950us       173us    96.78%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    4190.10     4195.02     4192.56        3.48   100.00%
"""
# Its log's first lines (start µs since the epoch, HTTP status, µs to end of response).
REAL_LOG = "1796242831697626\t200\t968\n1796242831697721\t200\t1068\n1796242831697834\t200\t1143\n"
# A supernode's exposition after some Lookups, some refused, and other methods' calls.
METRICS = """\
# HELP supernode_rpc_requests_total gRPC calls handled, by method and status code.
# TYPE supernode_rpc_requests_total counter
supernode_rpc_requests_total{code="OK",method="Login"} 1.0
supernode_rpc_requests_total{code="OK",method="Lookup"} 24815.0
supernode_rpc_requests_total{code="UNAUTHENTICATED",method="Lookup"} 8136.0
supernode_rpc_requests_total{code="INVALID_ARGUMENT",method="Lookup"} 2354.0
supernode_rpc_requests_total{code="OK",method="LookupMany"} 7.0
"""


@given(st.binary(max_size=70_000))
def test_a_frame_is_flag_zero_then_the_length_then_the_message(message: bytes) -> None:
    frame = grpc_frame(message)
    assert frame[0] == 0
    assert struct.unpack(">I", frame[1:5])[0] == len(message)
    assert frame[5:] == message


def test_the_url_and_label_name_the_method_with_or_without_a_leading_slash() -> None:
    for path in ("/supernode.v1.PresenceService/Lookup", "supernode.v1.PresenceService/Lookup"):
        assert grpc_url("127.0.0.1:5", path) == (
            "http://127.0.0.1:5/supernode.v1.PresenceService/Lookup"
        )
        assert method_label(path) == "Lookup"


def test_argv_is_a_timed_post_of_the_body_with_every_header() -> None:
    headers = [*GRPC_HEADERS, ("authorization", "Bearer t0k")]
    argv = h2load_argv(
        "/usr/bin/h2load", "http://h:1/S/M", Path("/b"), headers, 2.5, 0.5, 4, 8, 2, Path("/l")
    )
    assert argv == [
        "/usr/bin/h2load", "-c", "4", "-m", "8", "-t", "2", "-D", "2500ms",
        "--warm-up-time=500ms", "--log-file=/l", "-d", "/b",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", "authorization: Bearer t0k", "http://h:1/S/M",
    ]  # fmt: skip


def test_argv_without_warm_up_has_no_warm_up_option() -> None:
    argv = h2load_argv("h2load", "u", Path("b"), [], 1, 0, 1, 1, 1, Path("l"))
    assert not any(a.startswith("--warm-up-time") for a in argv)


@pytest.mark.parametrize(
    ("duration", "warmup", "clients", "streams", "threads"),
    [(0, 0, 1, 1, 1), (1, -1, 1, 1, 1), (1, 0, 0, 1, 1), (1, 0, 1, 0, 1), (1, 0, 2, 1, 3)],
)
def test_argv_refuses_what_h2load_would(
    duration: float, warmup: float, clients: int, streams: int, threads: int
) -> None:
    with pytest.raises(ValueError):
        h2load_argv("h2load", "u", Path("b"), [], duration, warmup, clients, streams, threads,
                    Path("l"))  # fmt: skip


def test_a_real_summary_parses() -> None:
    assert parse_summary(REAL_OUTPUT) == H2loadSummary(
        finished_s=3.0, req_per_s=8386.0, total=16772, started=16772, done=16772,
        succeeded=16772, failed=0, errored=0, timeout=0,
        status_2xx=16772, status_3xx=0, status_4xx=0, status_5xx=0,
    )  # fmt: skip


def test_output_without_a_summary_is_an_error_that_shows_it() -> None:
    with pytest.raises(NativeError, match="connection refused"):
        parse_summary("starting benchmark...\nconnection refused\n")


def test_the_log_gives_each_request_and_ignores_blank_lines_and_extra_columns() -> None:
    text = REAL_LOG + "\n1796242831697900\t503\t77\textra\n"
    assert parse_log(text) == [
        LogLine(1796242831697626, 200, 968),
        LogLine(1796242831697721, 200, 1068),
        LogLine(1796242831697834, 200, 1143),
        LogLine(1796242831697900, 503, 77),
    ]


def test_an_unreadable_log_line_is_an_error() -> None:
    with pytest.raises(NativeError, match="line 2"):
        parse_log("1\t200\t5\n1\t200\n")


@given(st.lists(st.integers(1, 10_000_000), min_size=1, max_size=200))
def test_the_histogram_holds_every_latency(latencies: list[int]) -> None:
    histogram = latency_histogram(LogLine(0, 200, us) for us in latencies)
    assert histogram.get_total_count() == len(latencies)
    assert histogram.get_max_value() >= max(latencies)  # hdr rounds up within 0.1 %
    assert histogram.get_max_value() <= max(latencies) * 1.001 + 1


def test_server_counts_split_a_methods_ok_from_its_other_codes() -> None:
    assert server_counts(METRICS, "Lookup") == ServerCounts(ok=24815, errors=8136 + 2354)
    assert server_counts(METRICS, "Search") == ServerCounts(0, 0)
    assert ServerCounts(10, 3) - ServerCounts(4, 1) == ServerCounts(6, 2)
    cancelled = METRICS + 'supernode_rpc_requests_total{code="CANCELLED",method="Lookup"} 5.0\n'
    assert server_counts(cancelled, "Lookup") == ServerCounts(24815, 8136 + 2354, cancelled=5)
    assert ServerCounts(1, 2, 3) + ServerCounts(1, 1, 1) - ServerCounts(2, 0, 1) == ServerCounts(
        0, 3, 3
    )


@pytest.mark.parametrize(
    ("done", "succeeded", "server", "fails"),
    [
        (100, 100, ServerCounts(130, 0), False),  # warm-up and in-flight calls count too
        (100, 100, ServerCounts(100, 0), False),
        (100, 100, None, False),  # not counted: HTTP only
        (100, 100, ServerCounts(99, 0), True),
        (100, 100, ServerCounts(200, 1), True),  # any gRPC error
        (100, 100, ServerCounts(100, 0, cancelled=8), False),  # h2load's calls at its stop
        (100, 100, ServerCounts(0, 100), True),  # all refused: HTTP 200 all the same
        (100, 90, ServerCounts(100, 0), True),  # HTTP failures
        (0, 0, ServerCounts(0, 0), True),  # nothing completed
    ],
)
def test_a_point_fails_unless_the_server_answered_every_call_ok(
    done: int, succeeded: int, server: ServerCounts | None, fails: bool
) -> None:
    assert (failure_reason(done, succeeded, server) is not None) == fails


def _point(target: str, latencies: list[int]) -> tuple[H2loadSummary, list[LogLine]]:
    n = len(latencies)
    summary = H2loadSummary(2.0, n / 2.0, n, n, n, n, 0, 0, 0, n, 0, 0, 0)
    return summary, [LogLine(0, 200, us) for us in latencies]


def test_a_point_has_its_figures_and_judging_it_records_the_server() -> None:
    summary, lines = _point("a", [1000] * 98 + [5000, 9000])
    point = point_from(
        summary, latency_histogram(lines), target="a", method="Lookup", clients=2, streams=4,
        duration_s=2.0,
    )  # fmt: skip
    assert (point.done, point.req_per_s, point.failed) == (100, 50.0, False)
    assert point.p50_ms == pytest.approx(1.0, rel=1e-3)
    assert point.max_ms == pytest.approx(9.0, rel=1e-3)
    assert hist.decode(point.histogram).get_total_count() == 100
    good = judge(point, ServerCounts(104, 0))
    assert (good.server_ok, good.server_errors, good.failed) == (104, 0, False)
    bad = judge(point, ServerCounts(0, 100))
    assert bad.failed and bad.failure is not None and "gRPC error" in bad.failure


def test_merged_points_add_counts_and_rates_and_merge_latencies() -> None:
    parts = []
    for target, latency in (("a", 1000), ("b", 3000)):
        summary, lines = _point(target, [latency] * 50)
        point = point_from(
            summary, latency_histogram(lines), target=target, method="Lookup", clients=2,
            streams=4, duration_s=2.0,
        )  # fmt: skip
        parts.append(judge(point, ServerCounts(60, 0)))
    total = merge_points(parts)
    assert (total.target, total.method, total.clients) == ("a,b", "Lookup", 4)
    assert (total.done, total.req_per_s, total.server_ok, total.failed) == (100, 50.0, 120, False)
    assert total.p50_ms == pytest.approx(1.0, rel=1e-3)
    assert total.p99_ms == pytest.approx(3.0, rel=1e-3)
    failed = merge_points([parts[0], judge(parts[1], ServerCounts(10, 0))])
    assert failed.failure is not None and failed.failure.startswith("b: ")


@pytest.mark.parametrize(
    ("first", "second"),
    [(("a:1", "http://m:1/metrics"), ("a:1", None)), (("a:1", "http://m/"), ("b:1", "http://m/"))],
)
async def test_one_server_is_not_counted_for_two_targets(
    first: tuple[str, str | None], second: tuple[str, str | None]
) -> None:
    """Its counters would hold both h2loads' calls: neither point could be judged."""
    targets = [NativeTarget(t, "/S/M", b"", metrics_url=m) for t, m in (first, second)]
    with pytest.raises(ValueError, match="one target per server"):
        await run_many(targets, duration_s=1, clients=1, streams=1)
