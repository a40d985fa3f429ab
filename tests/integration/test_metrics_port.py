"""The metrics port of every process of a node: its three paths, and the README's metrics
table against what a real node exports (both ways, so neither can drift)."""

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import families
from tests.integration.process import SupernodeProcess
from tests.integration.records import device

README = Path(__file__).resolve().parents[2] / "README.md"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def readme_metrics() -> set[str]:
    """Every metric named in the first column of README's metrics table."""
    text = README.read_text()
    table = text[text.index("| metric | meaning |") :].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        first_column = row.split("|")[1]
        names.update(
            re.sub(r"\{.*?\}", "", name) for name in re.findall(r"`([^`]+)`", first_column)
        )
    return names


def test_each_process_serves_metrics_health_and_readiness_only(
    supernode: SupernodeProcess,
) -> None:
    for metrics_url in supernode.metrics_urls():
        base = metrics_url.removesuffix("/metrics")
        status, body = _get(metrics_url)
        assert status == 200 and "supernode_build_info" in body
        assert _get(f"{base}/healthz") == (200, "ok\n")
        assert _get(f"{base}/readyz") == (200, "ready\n")
        for path in ("/", "/metrics/", "/favicon.ico", "/debug", "/healthz/x"):
            status, body = _get(f"{base}{path}")
            assert status == 404, path
            assert "/metrics, /healthz and /readyz" in body


async def test_readme_lists_exactly_the_exported_metrics(
    supernode: SupernodeProcess, connect: Callable[[], DirectoryConnection]
) -> None:
    # A little traffic, so the families whose series appear with a first call have one.
    conn = connect()
    alice = await new_user(conn, "alice")
    await conn.register_device(device(alice, "alice", "phone"))
    await conn.lookup("alice")
    exported = {
        name
        for url in supernode.metrics_urls()
        for name in families(_get(url)[1])
        if name.startswith("supernode_") and not name.startswith("supernode_cluster_")
    }
    documented = readme_metrics()
    assert exported - documented == set(), "exported but missing from README's table"
    assert documented - exported == set(), "in README's table but not exported"
