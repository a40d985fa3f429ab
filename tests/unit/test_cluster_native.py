"""The cluster benchmark's native cases (benchmarks.cluster_native): every loaded case has
the same h2loads, connections and streams (only where the calls go differs), the proxied
case calls node 0 with handles of every owner and the ring-aware one each owner, rounds merge
into rows, and a failed round is left out of the figures but shown."""

from __future__ import annotations

import pytest

from benchmarks import histogram as hist
from benchmarks.cluster_native import (
    H2LOADS,
    Case,
    CaseResult,
    Node,
    loaded_cases,
    native_comparisons,
    summarize,
    unloaded_cases,
)
from benchmarks.native import NativePoint

SINGLE = (Node("s:1", "http://s:2/metrics"), "t0", (1,))
RF3 = ([Node(f"a{i}:1", f"http://a{i}:2/metrics") for i in range(3)], "t3", (2, 3, 4))
RF1 = ([Node(f"b{i}:1", f"http://b{i}:2/metrics") for i in range(3)], "t1", (5, 6, 7),
       ["owned-by-0", "owned-by-1", "owned-by-2"])  # fmt: skip
HANDLES = ["u0", "u1", "u2"]


def test_loaded_cases_differ_only_in_where_the_calls_go() -> None:
    cases = {c.label: c for c in loaded_cases(SINGLE, RF3, RF1, HANDLES)}
    assert {(len(c.calls), c.clients, c.streams) for c in cases.values()} == {(H2LOADS, 4, 8)}
    proxied = cases["RF1 proxied (all via node 0)"]
    ring = cases["RF1 ring-aware (each to its owner)"]
    assert [h for _, h in proxied.calls] == [h for _, h in ring.calls] == RF1[3]
    assert {n.target for n, _ in proxied.calls} == {"b0:1"}
    assert [n.target for n, _ in ring.calls] == ["b0:1", "b1:1", "b2:1"]
    spread = cases["3 nodes RF3 ring-aware"]
    assert [n.target for n, _ in spread.calls] == ["a0:1", "a1:1", "a2:1"]
    assert {n.target for n, _ in cases["1 node"].calls} == {"s:1"}
    assert (spread.token, spread.pids, ring.pids) == ("t3", (2, 3, 4), (5, 6, 7))


def test_unloaded_cases_send_one_call_at_a_time_for_a_handle_node_1_owns() -> None:
    single, proxied, ring = unloaded_cases(SINGLE, RF1, "u0")
    assert all((c.clients, c.streams, len(c.calls)) == (1, 1, 1) for c in (single, proxied, ring))
    assert proxied.calls[0] == (RF1[0][0], "owned-by-1")
    assert ring.calls[0] == (RF1[0][1], "owned-by-1")


def point(rate: float, latency_us: int, failure: str | None = None) -> NativePoint:
    histogram = hist.new_histogram()
    hist.record_us(histogram, latency_us)
    return NativePoint(
        target="x", method="Lookup", clients=4, streams=8, duration_s=1.0, done=int(rate),
        http_succeeded=int(rate), req_per_s=rate, p50_ms=latency_us / 1000,
        p99_ms=latency_us / 1000, p999_ms=latency_us / 1000, max_ms=latency_us / 1000,
        histogram=hist.encode(histogram), failure=failure,
    )  # fmt: skip


def result(label: str, points: list[NativePoint], cpu: list[float | None]) -> CaseResult:
    case = Case(label, "s", ((SINGLE[0], "u0"),), "t", (1,), 4, 8)
    return CaseResult(case, points, cpu)


def test_rounds_merge_and_a_failed_round_is_shown_not_counted() -> None:
    (row,) = summarize([result("1 node", [point(1000, 2000), point(3000, 4000),
                                          point(99999, 10, "server counted fewer")],
                               [0.2, 0.4, 9.0])])  # fmt: skip
    assert row.rounds == 2 and row.req_per_s == 2000
    assert row.cpu_ms_per_op == pytest.approx(0.3)
    assert row.p99_ms == pytest.approx(4.0, rel=0.01)
    assert row.failures == ["server counted fewer"]


def test_comparisons_are_other_over_base_and_skip_a_case_with_no_good_round() -> None:
    rows = summarize([
        result("1 node", [point(1000, 2000)], [0.2]),
        result("3 nodes RF3 ring-aware", [point(800, 3000)], [0.3]),
        result("RF1 proxied (all via node 0)", [point(500, 1000, "bad")], [0.5]),
        result("RF1 ring-aware (each to its owner)", [point(1500, 1000)], [0.2]),
    ])  # fmt: skip
    (found,) = native_comparisons(rows)
    assert found["label"] == "native: 3 nodes (RF3 ring-aware) / 1 node"
    assert found["ops_ratio"] == pytest.approx(0.8)
    assert found["cpu_ratio"] == pytest.approx(1.5)
