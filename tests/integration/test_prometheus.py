"""A real Prometheus scrapes real nodes: a node of two processes (`--workers 2`) and a
two-node cluster. Through its query API: every target is up, the key series exist with
sane values, the dashboard's queries and the alert rules evaluate, and every metric they
name was scraped. ``promtool`` checks each scrape, the rules and the rules' unit tests.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from client_sdk.transport import DirectoryConnection
from supernode import __version__
from tests.cluster.harness import running_cluster
from tests.deploy_queries import (
    ALERTS,
    RATE_INTERVAL,
    alert_queries,
    dashboard_queries,
    metric_names,
)
from tests.integration.conftest import new_user
from tests.integration.metrics import families
from tests.integration.process import SupernodeProcess
from tests.integration.prometheus_support import Prometheus, prometheus_binaries, values
from tests.integration.records import device

TARGETS = 4  # the node's primary and its worker (--workers 2: two processes), two cluster nodes


def _address(metrics_url: str) -> str:
    return metrics_url.removeprefix("http://").removesuffix("/metrics")


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _declared_samples(text: str) -> set[str]:
    """Sample names a scrape declares, also for families without a series yet."""
    names = set()
    for family in families(text):
        names.add(family)
    for line in text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" histogram"):
            name = line.split()[2]
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return names


async def test_prometheus_scrapes_nodes_and_evaluates_dashboard_and_alerts(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    prometheus_bin, promtool = prometheus_binaries()
    node = start_supernode("--workers", "2")
    async with running_cluster(tmp_path / "cluster", 2) as cluster:
        urls = node.metrics_urls() + [cluster.node(i).metrics_url for i in range(2)]
        assert len(urls) == TARGETS
        for url in urls:  # every process ready; each cluster node holds its member key
            assert _scrape(url.replace("/metrics", "/readyz")) == "ready\n"
        prometheus = Prometheus(
            prometheus_bin, tmp_path / "prometheus", [_address(u) for u in urls]
        )
        try:
            prometheus.wait_until("up == 1", lambda r: len(r) == TARGETS)
            # Lookups after the first scrape, so that a rate over two scrapes sees them.
            async with DirectoryConnection(node.grpc_target) as conn:
                alice = await new_user(conn, "alice")
                await conn.register_device(device(alice, "alice", "phone"))

                async def looked_up() -> list[dict[str, object]]:
                    for _ in range(20):
                        await conn.lookup("alice")
                    return await asyncio.to_thread(
                        prometheus.query,
                        'sum(rate(supernode_rpc_requests_total{method="Lookup",code="OK"}[1m]))',
                    )

                for _ in range(100):  # bounded: about 20 s of one-second scrapes
                    if any(v > 0 for v in values(await looked_up())):
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("Prometheus never saw a Lookup rate above 0")

            _check_key_series(prometheus)
            scrapes = [_scrape(url) for url in urls]
            _check_every_query(prometheus, scrapes)
            _check_rules(prometheus)
        finally:
            prometheus.stop()
    for text in scrapes:  # a primary's, a worker's and a cluster member's exposition
        await asyncio.to_thread(_promtool, promtool, "check", "metrics", stdin=text)


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    _, promtool = prometheus_binaries()
    _promtool(promtool, "check", "rules", str(ALERTS))
    _promtool(promtool, "test", "rules", "alerts_test.yml")  # deploy/prometheus/


def _promtool(promtool: str, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [promtool, *args], input=stdin, cwd=ALERTS.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}: {done.stdout}{done.stderr}"


def _check_key_series(prometheus: Prometheus) -> None:
    build = prometheus.query("supernode_build_info")
    assert len(build) == TARGETS and values(build) == [1.0] * TARGETS
    assert {item["metric"]["version"] for item in build} == {__version__}
    buckets = prometheus.query('supernode_rpc_latency_seconds_bucket{method="Lookup",code="OK"}')
    assert {item["metric"]["le"] for item in buckets} >= {"0.001", "+Inf"}
    p99 = values(
        prometheus.query(
            "histogram_quantile(0.99, sum by (le) "
            '(rate(supernode_rpc_latency_seconds_bucket{method="Lookup"}[1m])))'
        )
    )
    assert len(p99) == 1 and 0 < p99[0] < float("inf")
    # Each target is scraped on its own schedule: the primary's latest scrape may predate
    # the account the lookups above found.
    prometheus.wait_until("max(supernode_accounts) >= 1", lambda r: len(r) == 1)
    prometheus.wait_until("process_resident_memory_bytes > 0", lambda r: len(r) == TARGETS)
    prometheus.wait_until(
        "supernode_event_loop_lag_probe_seconds_count > 0", lambda r: len(r) == TARGETS
    )
    prometheus.wait_until('max(supernode_cluster_nodes{state="up"}) == 2', lambda r: len(r) == 1)
    prometheus.wait_until("sum(supernode_cluster_etcd_reachable) == 2", lambda r: len(r) == 1)


def _check_every_query(prometheus: Prometheus, scrapes: list[str]) -> None:
    """Each dashboard and rule expression evaluates, and each metric it names exists."""
    scraped = {item["metric"]["__name__"] for item in prometheus.query('{job="supernode"}')}
    declared = set().union(*(_declared_samples(text) for text in scrapes)) | {"up"}
    queries = dashboard_queries() + list(alert_queries().values())
    for query in queries:
        prometheus.api("query", query=query.replace(RATE_INTERVAL, "1m"))  # parses, evaluates
        for name in metric_names(query):
            assert name in scraped or name in declared, f"{name} (in {query!r}) never scraped"


def _check_rules(prometheus: Prometheus) -> None:
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == set(alert_queries())
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    firing = [rule["name"] for rule in rules if rule["state"] == "firing"]
    assert firing == []  # healthy nodes raise no alert
