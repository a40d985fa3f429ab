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
    assert got[("supernode_rpc_duration_seconds_count", ok)] == 4
    assert abs(got[("supernode_rpc_duration_seconds_sum", ok)] - 20.00045) < 1e-9
    assert got[("supernode_rpc_duration_seconds_bucket", ok | {("le", "0.0001")})] == 2  # <=
    assert got[("supernode_rpc_duration_seconds_bucket", ok | {("le", "0.0005")})] == 3
    assert got[("supernode_rpc_duration_seconds_bucket", ok | {("le", "10.0")})] == 3
    assert got[("supernode_rpc_duration_seconds_bucket", ok | {("le", "+Inf")})] == 4
    missing = frozenset({("method", "Lookup"), ("code", "NOT_FOUND")})
    assert got[("supernode_rpc_requests_total", missing)] == 1


def test_every_method_is_exported_before_its_first_call() -> None:
    metrics = Metrics()
    metrics.rpc("Search")
    ok = frozenset({("method", "Search"), ("code", "OK")})
    assert samples(metrics)[("supernode_rpc_requests_total", ok)] == 0
