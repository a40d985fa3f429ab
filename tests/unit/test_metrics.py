import grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supernode.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_rpc_counts_and_latency_buckets_per_method_and_code() -> None:
    metrics = Metrics()
    lookup = metrics.rpc("Lookup")
    for seconds in (0.00005, 0.0001, 0.0003, 20.0):
        lookup.observe(grpc.StatusCode.OK, seconds)
    lookup.observe(grpc.StatusCode.NOT_FOUND, 0.001)
    got = samples(metrics)
    ok = frozenset({("method", "Lookup"), ("code", "OK")})
    assert got[("supernode_rpc_requests_total", ok)] == 4
    assert got[("supernode_rpc_handler_seconds_count", ok)] == 4
    assert abs(got[("supernode_rpc_handler_seconds_sum", ok)] - 20.00045) < 1e-9
    assert got[("supernode_rpc_handler_seconds_bucket", ok | {("le", "0.0001")})] == 2  # <=
    assert got[("supernode_rpc_handler_seconds_bucket", ok | {("le", "0.0005")})] == 3
    assert got[("supernode_rpc_handler_seconds_bucket", ok | {("le", "10.0")})] == 3
    assert got[("supernode_rpc_handler_seconds_bucket", ok | {("le", "+Inf")})] == 4
    missing = frozenset({("method", "Lookup"), ("code", "NOT_FOUND")})
    assert got[("supernode_rpc_requests_total", missing)] == 1


def test_every_method_is_exported_before_its_first_call() -> None:
    metrics = Metrics()
    metrics.rpc("Search")
    ok = frozenset({("method", "Search"), ("code", "OK")})
    assert samples(metrics)[("supernode_rpc_requests_total", ok)] == 0


def test_latency_runs_from_arrival_and_in_flight_counts_until_done() -> None:
    metrics = Metrics()
    lookup = metrics.rpc("Lookup")
    arrived = lookup.start()  # no interceptor here: the call's own start stands in
    second = lookup.start()
    method = frozenset({("method", "Lookup")})
    assert samples(metrics)[("supernode_rpc_in_flight", method)] == 2
    lookup.done(grpc.StatusCode.OK, arrived - 1.5)  # it waited 1.5 s before its handler ran
    lookup.done(grpc.StatusCode.UNAVAILABLE, second)
    got = samples(metrics)
    assert got[("supernode_rpc_in_flight", method)] == 0
    ok = method | {("code", "OK")}
    assert got[("supernode_rpc_latency_seconds_count", ok)] == 1
    assert got[("supernode_rpc_latency_seconds_bucket", ok | {("le", "1.0")})] == 0
    assert got[("supernode_rpc_latency_seconds_sum", ok)] >= 1.5
    assert got[("supernode_rpc_latency_seconds_count", method | {("code", "UNAVAILABLE")})] == 1


def test_build_info_and_refusal_totals() -> None:
    metrics = Metrics()
    info = [k for k in samples(metrics) if k[0] == "supernode_build_info"]
    assert len(info) == 1 and {"version", "python", "grpc"} == {k for k, _ in info[0][1]}
    login = metrics.rpc("Login")
    login.observe(grpc.StatusCode.UNAUTHENTICATED, 0.001)
    metrics.count_rate_limited("Lookup", "source")
    metrics.count_rate_limited("Lookup", "account")
    metrics.shed_counter("Login")()
    assert metrics.refusal_totals() == {
        "rate_limited": 2,
        "overload_shed": 1,
        "unauthenticated": 1,
        "permission_denied": 0,
    }
