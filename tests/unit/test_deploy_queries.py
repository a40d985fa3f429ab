"""Every metric the dashboard and the alert rules query is one a node exports.

Names come from a real node's registry (``supernode.metrics.Metrics``, the collectors every
process registers); the cluster's families need a running cluster member and are checked
against real scrapes in tests/integration/test_prometheus.py, as is the PromQL itself.
"""

import json

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supernode.metrics import Metrics
from tests.deploy_queries import DASHBOARD, alert_queries, dashboard_queries, metric_names

# Series Prometheus itself adds to every target.
PROMETHEUS_OWN = {"up"}


def node_sample_names() -> set[str]:
    """Every sample name a node's registry can expose (``_bucket``, ``_count``, ``_sum``
    of histograms, ``_total`` of counters)."""
    metrics = Metrics()
    metrics.rpc("Lookup")  # the per-method families have series once a method exists
    names = set()
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_count", "_sum"))
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names


def test_the_name_reader_skips_functions_labels_and_groupings() -> None:
    query = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{job="x",'
        'method=~"Lookup|b"}[5m]))) / on (instance) b_total > 0.25'
    )
    assert metric_names(query) == {"a_seconds_bucket", "b_total"}


def test_every_alert_rule_was_read() -> None:
    queries = alert_queries()
    assert len(queries) >= 10
    assert all(queries.values())
    assert "supernode_rpc_latency_seconds_bucket" in metric_names(
        queries["SupernodeLookupLatencyHigh"]
    )


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_metric_is_exported(source: str) -> None:
    queries = dashboard_queries() if source == "dashboard" else list(alert_queries().values())
    exported = node_sample_names() | PROMETHEUS_OWN
    referenced = set().union(*(metric_names(q) for q in queries))
    missing = {
        name
        for name in referenced - exported
        if not name.startswith("supernode_cluster_")  # test_prometheus.py scrapes a cluster
    }
    assert missing == set()
    assert any(name.startswith("supernode_cluster_") for name in referenced)  # replication


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    queries = "\n".join(dashboard_queries())
    for metric in (
        "supernode_rpc_requests_total",
        "supernode_rpc_latency_seconds_bucket",
        "supernode_devices_online",
        "supernode_watch_notification_delay_seconds_bucket",
        "supernode_cluster_hints_pending",
        "supernode_relay_bytes_total",
        "supernode_rate_limited_total",
        "supernode_requests_shed_total",
        "supernode_event_loop_lag_seconds",
        "supernode_rpc_in_flight",
    ):
        assert metric in queries, metric
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)  # Grafana needs unique ids
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
