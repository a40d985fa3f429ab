"""The suite's native phase without servers: reading redis-benchmark (a real 7.0 run's
output), judging a point by Redis's or etcd's own counts, the load shapes, the figures a
native point becomes, the echo server's counter, and the report's native parts."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import histogram as hist
from benchmarks.figures import Figure, RunInfo, RunResult, run_from_json, run_to_json
from benchmarks.headline import native_headlines, native_leads
from benchmarks.native import GRPC_GO_CALLS, NativeError, NativePoint, ServerCounts, server_counts
from benchmarks.native_drivers import KeysByBatch, NativeWorkload
from benchmarks.native_phase import (
    load_shape,
    measure_native,
    native_figure,
    native_keys,
    native_plan,
    unmeasured_figure,
)
from benchmarks.plan import NATIVE_SATURATION, NATIVE_UNLOADED, SATURATION
from benchmarks.redis_native import (
    RedisCounts,
    RedisDriver,
    judge_redis,
    parse_output,
    redis_benchmark_argv,
    redis_counts,
)
from benchmarks.report import generator_table, markdown
from benchmarks.run import SetupError, settings_from_args
from benchmarks.systems.echo import AnsweredCalls
from benchmarks.systems.etcd import txn_request

# redis-benchmark -p 26379 -c 4 -n 2000 GET k1 (redis-tools 7.0.15), progress line included.
REDIS_OUTPUT = (
    "GET k1: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r"
    "                                                  \r====== GET k1 ======\n"
    """\
  2000 requests completed in 0.06 seconds
  4 parallel clients
  21 bytes payload
  keep alive: 1
  host configuration "save": \n\
  host configuration "appendonly": no
  multi-thread: no

Latency by percentile distribution:
0.000% <= 0.031 milliseconds (cumulative count 87)
50.000% <= 0.063 milliseconds (cumulative count 1157)
75.000% <= 0.079 milliseconds (cumulative count 1562)
87.500% <= 0.103 milliseconds (cumulative count 1784)
93.750% <= 0.127 milliseconds (cumulative count 1880)
96.875% <= 0.183 milliseconds (cumulative count 1940)
98.438% <= 0.263 milliseconds (cumulative count 1969)
99.219% <= 0.679 milliseconds (cumulative count 1985)
99.609% <= 1.351 milliseconds (cumulative count 1993)
99.805% <= 2.031 milliseconds (cumulative count 1997)
99.902% <= 2.191 milliseconds (cumulative count 1999)
99.951% <= 2.959 milliseconds (cumulative count 2000)
100.000% <= 2.959 milliseconds (cumulative count 2000)

Cumulative distribution of latencies:
89.200% <= 0.103 milliseconds (cumulative count 1784)
100.000% <= 3.103 milliseconds (cumulative count 2000)

Summary:
  throughput summary: 34482.76 requests per second
  latency summary (msec):
          avg       min       p50       p95       p99       max
        0.080     0.024     0.063     0.143     0.575     2.959
"""
)


def test_redis_benchmark_output_gives_count_rate_and_the_latency_distribution() -> None:
    out = parse_output(REDIS_OUTPUT)
    assert (out.done, out.seconds, out.req_per_s) == (2000, 0.06, 34482.76)
    latency = hist.summarize(out.histogram)
    assert out.histogram.get_total_count() == 2000
    # Exact (within the histogram's precision) at the printed lines.
    assert latency.p50 == pytest.approx(63, rel=0.01)
    assert latency.max == pytest.approx(2959, rel=0.01)


@pytest.mark.parametrize(
    "text",
    [
        "",
        REDIS_OUTPUT.replace("throughput summary", "summary"),
        REDIS_OUTPUT.replace("(cumulative count 2000)", "(cumulative count 1999)"),
    ],
    ids=["empty", "no-throughput", "distribution-short-of-done"],
)
def test_unreadable_redis_benchmark_output_is_a_native_error(text: str) -> None:
    with pytest.raises(NativeError):
        parse_output(text)


def test_redis_benchmark_argv_sends_the_command_with_one_request_in_flight_each() -> None:
    argv = redis_benchmark_argv("rb", "127.0.0.1:7000", ["MGET", "a", "b"], 16, 5000)
    assert argv == ["rb", "-h", "127.0.0.1", "-p", "7000", "-c", "16", "-n", "5000", "-P", "1",
                    "MGET", "a", "b"]  # fmt: skip
    with pytest.raises(ValueError):
        redis_benchmark_argv("rb", "127.0.0.1:7000", [], 1, 1)


def test_redis_counts_read_commandstats_and_keyspace_stats() -> None:
    commandstats: dict[str, object] = {
        "cmdstat_mget": {"calls": 40, "usec": 9, "failed_calls": 1, "rejected_calls": 2}
    }
    stats: dict[str, object] = {"keyspace_hits": 370, "keyspace_misses": 3}
    assert redis_counts(commandstats, stats, "MGET") == RedisCounts(40, 3, 370, 3)
    assert redis_counts({}, stats, "GET") == RedisCounts(0, 0, 370, 3)  # never called yet


def _point(done: int = 100, **changes: object) -> NativePoint:
    histogram = hist.new_histogram()
    histogram.record_value(250, done)
    point = NativePoint(
        target="127.0.0.1:1", method="GET", clients=4, streams=1, duration_s=1.0, done=done,
        http_succeeded=done, req_per_s=float(done), p50_ms=0.25, p99_ms=0.25, p999_ms=0.25,
        max_ms=0.25, histogram=hist.encode(histogram),
    )  # fmt: skip
    return dataclasses.replace(point, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("counted", "failure"),
    [
        (RedisCounts(calls=120, failed=0, hits=1200, misses=0), None),
        (RedisCounts(calls=90, failed=0, hits=900, misses=0), "90 calls OK but redis-benchmark"),
        (RedisCounts(calls=120, failed=5, hits=1150, misses=0), "failed or rejected 5"),
        (RedisCounts(calls=120, failed=0, hits=1190, misses=10), "missed 10 keys"),
        (RedisCounts(calls=120, failed=0, hits=500, misses=0), "found 500 keys"),
    ],
    ids=["all-ok", "fewer-calls", "failed-calls", "missed-keys", "too-few-hits"],
)
def test_a_redis_point_stands_only_if_redis_answered_and_found_every_key(
    counted: RedisCounts, failure: str | None
) -> None:
    judged = judge_redis(_point(100), counted, keys_per_request=10)
    if failure is None:
        assert judged.failure is None and judged.server_ok == 120
    else:
        assert judged.failure is not None and failure in judged.failure


async def test_the_redis_driver_refuses_multiplexed_load() -> None:
    with pytest.raises(ValueError, match="one request in flight"):
        await RedisDriver("127.0.0.1:1", ("GET", "k")).run(
            clients=4, streams=2, duration_s=1, warmup_s=0
        )


ETCD_METRICS = """\
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 2923
grpc_server_handled_total{grpc_code="NotFound",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 4
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 811
"""  # noqa: E501


def test_etcd_calls_are_counted_from_its_grpc_server_handled_total() -> None:
    assert server_counts(ETCD_METRICS, "Range", GRPC_GO_CALLS) == ServerCounts(2923, 4)
    assert server_counts(ETCD_METRICS, "Txn", GRPC_GO_CALLS) == ServerCounts(811, 0)


def test_the_echo_servers_counter_exposes_each_methods_answers_as_ok() -> None:
    calls = AnsweredCalls()
    calls.answered.update({"Echo1": 5, "Echo100": 0})
    (family,) = calls.collect()
    samples = {(s.name, s.labels["method"], s.labels["code"]): s.value for s in family.samples}
    assert samples[("echo_requests_total", "Echo1", "OK")] == 5
    assert samples[("echo_requests_total", "Echo100", "OK")] == 0


def test_native_keys_are_the_same_users_for_every_system_of_a_run() -> None:
    keys = native_keys(1000, 7, "uniform")
    assert keys == native_keys(1000, 7, "uniform")
    assert {batch: len(k) for batch, k in keys.items()} == {1: 1, 10: 10, 100: 100}
    assert all(0 <= i < 1000 for k in keys.values() for i in k)
    assert len(txn_request(keys[10]).success) == 10


@pytest.mark.parametrize(
    ("batch", "multiplexed", "phase", "shape"),
    [
        (1, True, NATIVE_UNLOADED, (1, 1)),
        (1, True, NATIVE_SATURATION, (4, 16)),
        (100, True, NATIVE_SATURATION, (4, 4)),
        (1, False, NATIVE_SATURATION, (64, 1)),
        (10, False, NATIVE_SATURATION, (16, 1)),
    ],
)
def test_native_points_have_the_python_generators_requests_in_flight(
    batch: int, multiplexed: bool, phase: str, shape: tuple[int, int]
) -> None:
    assert load_shape(batch, multiplexed, 4, phase) == shape


class _Driver:
    multiplexed = True

    async def run(
        self, *, clients: int, streams: int, duration_s: float, warmup_s: float
    ) -> NativePoint:
        raise AssertionError("not run")


def _workload(system: str, workload: str, batch: int = 1) -> NativeWorkload:
    return NativeWorkload(system, workload, batch, _Driver())


def test_a_judged_native_point_becomes_a_figure_with_cpu_per_answer_and_per_process() -> None:
    point = dataclasses.replace(_point(1000), server_ok=1200, server_errors=0)
    figure = native_figure(
        _workload("supernode", "lookup-many-10", 10), NATIVE_SATURATION, point,
        server_cpu_s=0.6, generator_cpu_s=0.1, server_processes=2,
    )  # fmt: skip
    assert (figure.generator, figure.server_ok, figure.completed) == ("h2load", 1200, 1000)
    assert figure.achieved_rate == 1000 and figure.keys_per_s == 10_000
    assert figure.rate_per_process == 500
    assert figure.server_cpu_us_per_op == pytest.approx(500)  # 0.6 s / 1200 answers
    assert figure.concurrency == 4 and figure.rate_label == "c=4"


def test_a_failed_native_point_reports_no_throughput() -> None:
    point = dataclasses.replace(_point(1000), server_ok=10, failure="the server answered 10")
    figure = native_figure(
        _workload("etcd", "range-serializable"), NATIVE_SATURATION, point,
        server_cpu_s=0.6, generator_cpu_s=0.1, server_processes=1,
    )  # fmt: skip
    assert figure.failure is not None and figure.achieved_rate == 0 and figure.keys_per_s == 0
    missing = unmeasured_figure(_workload("redis", "get"), NATIVE_UNLOADED, "no binary")
    assert missing.failure == "no binary" and missing.completed == 0


def _figure(system: str, workload: str, phase: str, rate: float, batch: int = 1) -> Figure:
    generator = "python" if phase == SATURATION else "h2load"
    return Figure(
        system=system, workload=workload, batch=batch, phase=phase, mode="closed",
        rate_label="c=64", target_rate=None, concurrency=64, connections=4, processes=1,
        duration_s=1.0, achieved_rate=rate, keys_per_s=rate * batch, completed=int(rate),
        errors=0, error_kinds={}, error_example="", unsent=0, mean_us=300.0, p50_us=250,
        p90_us=280, p99_us=400, p999_us=500, max_us=600, send_lag_p99_us=0, server_cpu_s=1.0,
        server_cpu_s_per_1000_ops=1000 / rate, generator_cpu_s=0.1, histogram="",
        generator=generator, server_ok=None if generator == "python" else int(rate),
    )  # fmt: skip


def _run(figures: list[Figure]) -> RunResult:
    info = RunInfo(
        started_at="2026-12-08T01:00:00", finished_at="2026-12-08T01:01:00", command=[],
        users=200, seed=1, key_dist="uniform", arrivals="poisson", processes=1,
        duration_s=1.0, warmup_s=0.25, quick=True, systems=["supernode", "etcd"], machine={},
    )  # fmt: skip
    return RunResult(info, figures, [])


RUN = _run([
    _figure("supernode", "lookup", SATURATION, 2000),
    _figure("etcd", "range-serializable", SATURATION, 1500),
    _figure("supernode", "lookup", NATIVE_SATURATION, 3000),
    _figure("etcd", "range-serializable", NATIVE_SATURATION, 15000),
    _figure("supernode", "lookup-many-100", NATIVE_SATURATION, 2000, 100),
    _figure("etcd", "txn-100", NATIVE_SATURATION, 1000, 100),
])  # fmt: skip


def test_the_native_headline_and_leads_say_who_is_ahead_and_by_how_much() -> None:
    by_key = {h.key: h for h in native_headlines(RUN)}
    assert by_key["native_lookup_vs_etcd_range_per_machine"].value == pytest.approx(0.2)
    assert by_key["native_lookup_many_100_vs_etcd_txn_100"].value == pytest.approx(2.0)
    assert by_key["native_lookup_vs_redis_get_per_machine"].value is None  # not in this run
    leads = native_leads(RUN)
    assert leads[0].startswith("etcd range-serializable is 5.00x supernode lookup per machine")
    assert leads[1].startswith("supernode lookup-many-100 is 2.00x etcd txn-100 per machine")


def test_the_markdown_has_the_native_tables_and_both_generators_maxima() -> None:
    text = markdown(RUN)
    assert "## Native generator, maximum throughput" in text
    assert "## Who is ahead" in text and "etcd range-serializable is 5.00x" in text
    table = "\n".join(generator_table(RUN))
    assert "| supernode | lookup | 2,000 | 3,000 | 1.50 |" in table
    assert "| etcd | range-serializable | 1,500 | 15,000 | 10.00 |" in table


def test_generators_are_chosen_on_the_command_line() -> None:
    assert settings_from_args(["--generators", "native"]).python is False
    quick = settings_from_args(["--quick"])
    assert quick.python and quick.native and quick.native_phases == (NATIVE_SATURATION,)
    with pytest.raises(SetupError, match="--generators"):
        settings_from_args(["--generators", "wrk"])


def test_the_json_carries_per_process_and_cpu_per_op_and_reads_back() -> None:
    data = run_to_json(RUN)
    (sn_native,) = [f for f in data["figures"] if f["phase"] == NATIVE_SATURATION
                    and f["workload"] == "lookup"]  # fmt: skip
    assert sn_native["rate_per_process"] == 3000 and sn_native["generator"] == "h2load"
    assert sn_native["server_cpu_us_per_op"] == pytest.approx(1e6 / 3000)
    assert run_from_json(data) == RUN


class _NativeSystem:
    def __init__(self, name: str, workloads: int) -> None:
        self.name, self._count = name, workloads

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        return [_workload(self.name, f"w{i}") for i in range(self._count)]


class _PythonOnlySystem:
    name = "ring-routed"


def test_native_workloads_interleave_systems_and_name_a_system_without_them() -> None:
    keys = native_keys(10, 1, "uniform")
    plan = native_plan([_NativeSystem("a", 2), _NativeSystem("b", 1)], keys)
    assert [(w.system, w.workload) for w in plan] == [("a", "w0"), ("b", "w0"), ("a", "w1")]
    with pytest.raises(ValueError, match="no native workloads for ring-routed"):
        native_plan([_NativeSystem("a", 1), _PythonOnlySystem()], keys)


async def test_a_workload_whose_precheck_fails_is_not_loaded_and_fails_each_phase() -> None:
    async def missing() -> None:
        raise LookupError("etcd holds 0 of the 1 keys asked for")

    workload = NativeWorkload("etcd", "range-serializable", 1, _Driver(), missing)
    recorded: list[Figure] = []
    await measure_native(
        [workload], lambda system: [], recorded.append,
        connections=4, duration_s=1.0, warmup_s=0.0,
    )  # fmt: skip
    assert [f.phase for f in recorded] == [NATIVE_UNLOADED, NATIVE_SATURATION]
    assert all(f.failure and "holds 0 of the 1 keys" in f.failure for f in recorded)
