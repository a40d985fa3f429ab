"""Pure logic of the benchmark suite: schedules, key choice, histograms, the loop, reports."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import histogram as hist
from benchmarks import run as bench_run
from benchmarks.dataset import LEASE_MS, Dataset
from benchmarks.figures import Figure, Memory, RunInfo, RunResult, measured_figure, run_from_json
from benchmarks.generate import restamp, user_chunks
from benchmarks.headline import headlines
from benchmarks.keys import make_sampler, scatter_factor, zipf_cdf
from benchmarks.loadgen import (
    CLOSED,
    OPEN,
    GeneratorPool,
    LoadgenError,
    LoadSpec,
    PointResult,
    constant_schedule,
    error_kind,
    merge_results,
    pingpong,
    poisson_schedule,
    run_in_process,
    share,
)
from benchmarks.plan import (
    COMMON,
    SATURATION,
    SWEEP,
    UNLOADED,
    common_rates,
    interleave,
    parse_rates,
)
from benchmarks.report import (
    JSON_NAME,
    MARKDOWN_NAME,
    SPECTRUM_CHART,
    THROUGHPUT_CHART,
    write_report,
)
from benchmarks.run import SetupError, load_system, settings_from_args
from benchmarks.systems.base import ClientSpec
from client_sdk.protocol.v1 import directory_pb2 as pb

# ---------------------------------------------------------------------- schedules


def test_constant_schedule_is_evenly_spaced_and_ends_before_the_end() -> None:
    times = list(constant_schedule(100.0, 10.0, 11.0))
    assert len(times) == 100
    assert times[0] == 10.0 and times[-1] < 11.0
    assert all(math.isclose(b - a, 0.01) for a, b in itertools.pairwise(times))


def test_constant_schedules_of_several_processes_interleave_into_one() -> None:
    rate, processes = 90.0, 3
    merged = sorted(
        t
        for index in range(processes)
        for t in constant_schedule(rate / processes, 0.0, 2.0, phase=index / processes)
    )
    single = list(constant_schedule(rate, 0.0, 2.0))
    assert len(merged) == len(single)
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(merged, single, strict=True))


def test_poisson_schedule_has_the_rate_and_exponential_gaps() -> None:
    rate, seconds = 2000.0, 20.0
    times = list(poisson_schedule(rate, 5.0, 5.0 + seconds, random.Random(7)))
    expected = rate * seconds
    assert abs(len(times) - expected) < 5 * math.sqrt(expected)  # five standard deviations
    assert all(5.0 <= t < 25.0 for t in times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0 for gap in gaps)
    mean = statistics.fmean(gaps)
    assert math.isclose(mean, 1 / rate, rel_tol=0.05)
    # Exponential: the standard deviation equals the mean (constant spacing would give 0).
    assert math.isclose(statistics.pstdev(gaps) / mean, 1.0, rel_tol=0.1)


def test_poisson_schedule_is_deterministic_for_a_seed() -> None:
    first = list(poisson_schedule(500.0, 0.0, 1.0, random.Random(3)))
    assert first == list(poisson_schedule(500.0, 0.0, 1.0, random.Random(3)))
    assert first != list(poisson_schedule(500.0, 0.0, 1.0, random.Random(4)))


@pytest.mark.parametrize(("total", "parts"), [(64, 1), (64, 3), (5, 2), (1, 1), (7, 7)])
def test_shares_add_up_to_the_total(total: int, parts: int) -> None:
    shares = [share(total, index, parts) for index in range(parts)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


# ---------------------------------------------------------------------- keys


def test_zipf_cdf_is_increasing_and_ends_at_one() -> None:
    cdf = zipf_cdf(1000)
    assert len(cdf) == 1000 and cdf[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(cdf))


def test_zipf_sampler_follows_one_over_rank() -> None:
    n, draws = 10_000, 200_000
    harmonic = sum(1 / k for k in range(1, n + 1))
    sample = make_sampler("zipf", n, random.Random(1))
    counts = Counter(sample() for _ in range(draws))
    factor = scatter_factor(n)
    for rank in (1, 2, 10):
        index = (rank - 1) * factor % n  # where rank lands after scattering
        expected = draws / (rank * harmonic)
        assert abs(counts[index] - expected) < 6 * math.sqrt(expected)
    # Skewed: the hundred most popular users take about half the draws (~0.53 for n=10k).
    top = sum(count for _, count in counts.most_common(100)) / draws
    assert 0.45 < top < 0.6


def test_zipf_scatter_is_a_permutation() -> None:
    for n in (1, 2, 10, 97, 1000, 4096):
        factor = scatter_factor(n)
        assert sorted(rank * factor % n for rank in range(n)) == list(range(n))


def test_uniform_sampler_covers_the_range() -> None:
    sample = make_sampler("uniform", 50, random.Random(2))
    seen = {sample() for _ in range(5000)}
    assert seen == set(range(50))


def test_unknown_distribution_is_refused() -> None:
    with pytest.raises(ValueError, match="key distribution"):
        make_sampler("pareto", 10, random.Random(1))


# ---------------------------------------------------------------------- histograms


def _histogram(values: list[int]) -> str:
    h = hist.new_histogram()
    for value in values:
        hist.record_us(h, value)
    return hist.encode(h)


def test_merged_histograms_add_counts_and_keep_percentiles() -> None:
    low = _histogram(list(range(1, 1001)))  # 1..1000 µs
    high = _histogram(list(range(1001, 2001)))  # 1001..2000 µs
    merged = hist.merge([low, high, hist.encode(hist.new_histogram())])
    summary = hist.summarize(merged)
    assert summary.count == 2000
    assert summary.p50 == pytest.approx(1000, rel=0.002)
    assert summary.p99 == pytest.approx(1980, rel=0.002)
    assert summary.max == pytest.approx(2000, rel=0.002)


def test_out_of_range_latencies_are_clamped_not_lost() -> None:
    h = hist.new_histogram()
    hist.record_us(h, 0)
    hist.record_us(h, 10**12)
    assert h.get_total_count() == 2
    assert hist.summarize(h).max >= hist.HIGHEST_US * 0.999


def test_empty_histogram_summarizes_to_zeros() -> None:
    assert hist.summarize(hist.new_histogram()).count == 0
    assert hist.spectrum(hist.new_histogram()) == []


def test_point_results_merge_across_processes() -> None:
    a = PointResult(
        _histogram([100] * 10), _histogram([1]), 10, 12, 1, {"X": 2}, {"X": "x"}, 2.0, 0.5
    )
    b = PointResult(
        _histogram([300] * 30), _histogram([1]), 30, 31, 0, {"X": 1, "Y": 1}, {}, 2.5, 0.7
    )
    merged = merge_results([a, b])
    assert (merged.completed, merged.total_completed, merged.unsent) == (40, 43, 1)
    assert merged.errors == {"X": 3, "Y": 1} and merged.error_count == 4
    assert merged.elapsed_s == 2.5 and merged.achieved_rate == 16.0
    assert merged.generator_cpu_s == pytest.approx(1.2)
    assert hist.decode(merged.histogram).get_total_count() == 40


def test_error_kind_names_grpc_status_codes() -> None:
    class FakeRpcError(Exception):
        def code(self) -> object:
            return type("Code", (), {"name": "UNAVAILABLE"})()

    assert error_kind(FakeRpcError()) == "FakeRpcError:UNAVAILABLE"
    assert error_kind(ValueError("x")) == "ValueError"


# ---------------------------------------------------------------------- the loop, in process


class FakeClient:
    """Answers after ``delay``; the first call may stall; may fail every call."""

    def __init__(
        self, spec: ClientSpec, *, delay: float = 0.0, stall: float = 0.0, fail: bool = False
    ) -> None:
        self.batch = spec.batch
        self.users = int(spec.options.get("users", "1"))
        self.delay, self.stall, self.fail = delay, stall, fail
        self.calls = 0

    async def connect(self) -> None:
        pass

    async def lookup(self, indexes: list[int]) -> None:
        assert len(indexes) == self.batch
        assert all(0 <= i < self.users for i in indexes)
        self.calls += 1
        if self.fail:
            raise ConnectionError("refused")
        await asyncio.sleep(self.stall if self.calls == 1 else self.delay)

    async def close(self) -> None:
        pass


def _client(batch: int = 1, users: int = 100) -> ClientSpec:
    return ClientSpec("fake", "fake", "nowhere", batch, {"users": str(users)})


async def test_closed_loop_counts_completions_and_passes_batches() -> None:
    # A window long enough that a stall of the shared machine cannot swallow it whole.
    spec = LoadSpec(_client(batch=10), CLOSED, 1.0, warmup_s=0.05, concurrency=4, users=100)
    result = await run_in_process(spec, lambda s: FakeClient(s, delay=0.001))
    assert result.completed > 0 and result.error_count == 0
    assert result.total_completed >= result.completed
    assert hist.decode(result.histogram).get_total_count() == result.completed


async def test_errors_are_counted_apart_from_latencies() -> None:
    spec = pingpong(_client(), 0.1, users=100)
    result = await run_in_process(spec, lambda s: FakeClient(s, fail=True))
    assert result.completed == 0
    assert set(result.errors) == {"ConnectionError"} and result.error_count > 0
    assert result.error_examples["ConnectionError"] == "refused"
    assert hist.decode(result.histogram).get_total_count() == 0


async def test_open_loop_charges_a_stall_to_every_request_due_during_it() -> None:
    """Coordinated omission: one worker, a 300 ms stall at a 200/s schedule. The ~60
    requests due during the stall wait for the worker and must show it; a closed loop
    sees only the one stalled call (give or take a loaded machine's own hiccup)."""
    stall, slow_us = 0.3, 100_000

    def factory(s: ClientSpec) -> FakeClient:
        return FakeClient(s, delay=0.0005, stall=stall)

    base = {"users": 100, "concurrency": 1, "connections": 1}
    open_spec = LoadSpec(_client(), OPEN, 0.6, rate=200.0, arrivals="constant", **base)
    closed_spec = LoadSpec(_client(), CLOSED, 0.6, **base)
    open_result = await run_in_process(open_spec, factory)
    closed_result = await run_in_process(closed_spec, factory)

    def slow(result: PointResult) -> int:
        h = hist.decode(result.histogram)
        return sum(
            i.count_at_value_iterated_to
            for i in h.get_recorded_iterator()
            if i.value_iterated_to >= slow_us
        )

    assert 1 <= slow(closed_result) <= 3
    assert slow(open_result) >= 10


def test_generator_pool_reports_a_failed_point_and_stays_usable() -> None:
    spec = pingpong(ClientSpec("no-such-system", "x", "nowhere"), 0.1)
    with GeneratorPool(1) as pool:
        for _ in range(2):  # the failure left the protocol in step: the next point runs too
            with pytest.raises(LoadgenError, match="unknown system 'no-such-system'"):
                pool.run(spec)


def test_load_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        LoadSpec(_client(), OPEN, 1.0)
    with pytest.raises(ValueError, match="mode"):
        LoadSpec(_client(), "burst", 1.0)
    with pytest.raises(ValueError, match="at least one request"):
        LoadSpec(_client(), CLOSED, 1.0, concurrency=1, processes=2)


# ---------------------------------------------------------------------- plan and settings


def test_rates_parse_as_fractions_or_absolute() -> None:
    rates = parse_rates("10%, 50%,1200")
    assert [(r.value, r.relative) for r in rates] == [(0.1, True), (0.5, True), (1200.0, False)]
    assert [r.ops_per_s(2000) for r in rates] == [200.0, 1000.0, 1200.0]
    assert [r.label for r in rates] == ["10%", "50%", "1200/s"]
    with pytest.raises(ValueError):
        parse_rates("0%")


def test_interleave_alternates_systems() -> None:
    a = [_spec("a", "1"), _spec("a", "2"), _spec("a", "3")]
    b = [_spec("b", "1")]
    assert [(s.system, s.workload) for s in interleave([a, b])] == [
        ("a", "1"),
        ("b", "1"),
        ("a", "2"),
        ("a", "3"),
    ]


def _spec(system: str, workload: str, batch: int = 1) -> ClientSpec:
    return ClientSpec(system, workload, "t", batch)


def test_common_rate_is_half_the_slowest_per_batch_size() -> None:
    maxima = {("a", "x"): 1000.0, ("b", "y"): 400.0, ("a", "x100"): 50.0, ("b", "dead"): 0.0}
    batches = {("a", "x"): 1, ("b", "y"): 1, ("a", "x100"): 100, ("b", "dead"): 1}
    assert common_rates(maxima, batches) == {1: 200.0, 100: 25.0}


def test_settings_quick_defaults_and_unknown_systems() -> None:
    quick = settings_from_args(["--quick", "--systems", "supernode,grpc-echo"])
    assert quick.users == 200 and quick.duration_s == 1.0 and not quick.common
    assert [r.label for r in quick.rates] == ["50%"]
    full = settings_from_args([])
    assert full.users == 1_000_000 and full.systems == ["supernode", "grpc-echo", "etcd", "redis"]
    assert len(full.rates) == 7 and full.common
    with pytest.raises(SetupError, match="unknown"):
        settings_from_args(["--systems", "supernode,mysql"])


def test_a_selected_system_without_its_module_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(bench_run.SYSTEMS, "ghost", ("benchmarks.systems.ghost", "GhostSystem"))
    with pytest.raises(SetupError, match="'ghost' is not available"):
        load_system("ghost")
    assert load_system("grpc-echo").name == "grpc-echo"


# ---------------------------------------------------------------------- data set cache


def test_cached_users_can_be_restamped_without_changing_sizes(tmp_path: Path) -> None:
    dataset = Dataset(30, seed=5)
    first = [u for chunk in user_chunks(dataset, cache_dir=tmp_path) for u in chunk]
    assert [u.handle for u in first] == [Dataset.handle(i) for i in range(30)]
    again = [u for chunk in user_chunks(dataset, cache_dir=tmp_path) for u in chunk]
    assert again == first  # read back from the cache, not regenerated
    later = 1_900_000_000_000
    moved = [
        u for chunk in user_chunks(dataset, cache_dir=tmp_path, lease_from_ms=later) for u in chunk
    ]
    for old, new in zip(first, moved, strict=True):
        assert len(new.lookup_response()) == len(old.lookup_response())
        for (_, _, raw_old), (_, _, raw_new) in zip(old.devices, new.devices, strict=True):
            device_old, device_new = pb.Device.FromString(raw_old), pb.Device.FromString(raw_new)
            assert device_new.expires_at_ms == later + LEASE_MS
            assert device_new.signed == device_old.signed  # signatures untouched
    assert restamp(first[0], 5).devices[0][:2] == first[0].devices[0][:2]


# ---------------------------------------------------------------------- reports


def _figure(
    system: str,
    workload: str,
    phase: str,
    rate: float,
    latencies: list[int],
    batch: int = 1,
    label: str = "c=1",
) -> Figure:
    mode = OPEN if phase in (SWEEP, COMMON) else CLOSED
    options = {"rate": rate} if mode == OPEN else {}
    spec = LoadSpec(ClientSpec(system, workload, "t", batch), mode, 1.0, users=10, **options)
    result = PointResult(
        _histogram(latencies), _histogram([1]), int(rate), int(rate) + 5, 0, {}, {}, 1.0, 0.3
    )
    return measured_figure(spec, phase, label, result, server_cpu_s=0.5)


def _synthetic_run() -> RunResult:
    figures = [
        _figure("supernode", "lookup", UNLOADED, 1000, [600] * 50),
        _figure("grpc-echo", "echo", UNLOADED, 1500, [400] * 50),
        _figure("supernode", "lookup", SATURATION, 3000, [9000] * 50, label="c=64"),
        _figure("grpc-echo", "echo", SATURATION, 6000, [5000] * 50, label="c=64"),
        _figure("supernode", "lookup-many-100", SATURATION, 1000, [9000] * 50, 100, "c=16"),
        _figure("etcd", "txn-100", SATURATION, 1600, [9000] * 50, 100, "c=16"),
        _figure("supernode", "lookup", SWEEP, 300, list(range(500, 900)), label="10%"),
        _figure("supernode", "lookup", SWEEP, 1500, list(range(700, 3100)), label="50%"),
        _figure("grpc-echo", "echo", SWEEP, 600, list(range(400, 700)), label="10%"),
        _figure("grpc-echo", "echo", SWEEP, 3000, list(range(500, 2100)), label="50%"),
        _figure("supernode", "lookup", COMMON, 1500, list(range(700, 3100)), label="1,500/s"),
        _figure("grpc-echo", "echo", COMMON, 1500, list(range(400, 1500)), label="1,500/s"),
    ]
    info = RunInfo(
        started_at="2025-01-02T03:04:05",
        finished_at="2025-01-02T03:14:05",
        command=["--quick"],
        users=10_000,
        seed=1,
        key_dist="uniform",
        arrivals="poisson",
        processes=1,
        duration_s=1.0,
        warmup_s=0.25,
        quick=True,
        systems=["supernode", "grpc-echo", "etcd"],
        machine={"cpus": "2"},
    )
    return RunResult(info, figures, [Memory("supernode", 300 << 20, 200_000)])


def test_headline_ratios_come_from_the_run() -> None:
    values = {h.key: h.value for h in headlines(_synthetic_run())}
    assert values["lookup_max_vs_echo"] == pytest.approx(0.5)
    assert values["unloaded_p50_vs_echo"] == pytest.approx(1.5, rel=0.01)
    assert values["p99_at_half_max_ms"] == pytest.approx(3.08, rel=0.01)
    assert values["grpc-echo_p99_at_half_max_ms"] == pytest.approx(2.08, rel=0.01)
    assert values["lookup_many_100_vs_etcd_txn_100"] == pytest.approx(1000 * 100 / (1600 * 100))
    assert values["lookup_many_100_vs_echo_100"] is None  # not measured: said, not invented
    assert values["rss_per_million_users_mib"] == pytest.approx(300 * 5)


def test_memory_per_million_users_needs_enough_users() -> None:
    run = _synthetic_run()
    small = RunResult(run.info, run.figures, [Memory("supernode", 80 << 20, 10_000)])
    (rss,) = [h for h in headlines(small) if h.key == "rss_per_million_users_mib"]
    assert rss.value is None and "80 MiB with 10,000 users" in rss.detail


def test_report_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    run = _synthetic_run()
    directory = write_report(run, tmp_path)
    assert directory == tmp_path / "20250102-030405"
    for name in (JSON_NAME, MARKDOWN_NAME, THROUGHPUT_CHART, SPECTRUM_CHART):
        assert (directory / name).stat().st_size > 0
    assert (directory / THROUGHPUT_CHART).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((directory / JSON_NAME).read_text())
    assert len(data["figures"]) == len(run.figures)
    assert {"p50_us", "p999_us", "server_cpu_s_per_1000_ops", "keys_per_s"} <= set(
        data["figures"][0]
    )
    assert run_from_json(data) == run
    markdown = (directory / MARKDOWN_NAME).read_text()
    assert "## Headline" in markdown and "0.50x" in markdown and "n/a" in markdown
    assert write_report(run, tmp_path) == tmp_path / "20250102-030405-2"  # never overwrites


async def test_a_slow_collection_before_the_run_does_not_eat_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A generator with a large heap spends a while in gc.collect(); that must happen before
    # the start time is fixed, or every request of a short window is already late (the
    # old order left this window with no completion at all).
    collect = gc.collect

    def slow_collect(*args: int) -> int:
        time.sleep(0.3)  # stands for a big heap's collection, not for a wait on the run
        return collect(*args)

    monkeypatch.setattr(gc, "collect", slow_collect)
    spec = pingpong(_client(), 0.1, users=100)
    result = await run_in_process(spec, lambda s: FakeClient(s, delay=0.001))
    assert result.completed > 0 and result.error_count == 0
