"""Debian's Prometheus on loopback, scraping the processes a test started.

Installed by the project's own installer (``supernode.debian``): a test that needs it
fails, never skips, when it cannot be installed. The server keeps its data in a temporary
directory, scrapes every second and evaluates deploy/prometheus/alerts.yml, so a test can
ask its HTTP API what it scraped and how the rules fared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from supernode.cluster.etcd_server import dying_with_parent, free_ports
from supernode.debian import PROMETHEUS_PACKAGE, PROMTOOL, PackageError, ensure_installed
from tests.deploy_queries import ALERTS

JOB = "supernode"  # the job name deploy/prometheus/alerts.yml selects


def prometheus_binaries() -> tuple[str, str]:
    """``prometheus`` and ``promtool`` (the same Debian package), installed if missing."""
    try:
        prometheus = ensure_installed(PROMETHEUS_PACKAGE)
    except PackageError as error:
        pytest.fail(f"the Prometheus tests need Debian's prometheus: {error}")
    promtool = shutil.which(PROMTOOL)
    if promtool is None:
        pytest.fail(f"{PROMETHEUS_PACKAGE.name} is installed but {PROMTOOL} is not on PATH")
    return prometheus, promtool


def scrape_config(targets: list[str]) -> str:
    """A Prometheus configuration (JSON is YAML) scraping ``targets`` every second."""
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": targets}]},
            ],
        }
    )


class Prometheus:
    """One ``prometheus`` process; :meth:`query` asks its HTTP API."""

    def __init__(self, binary: str, directory: Path, targets: list[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(scrape_config(targets))
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        self.log = directory / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                dying_with_parent(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer; AssertionError otherwise."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [ts, "1"]}, ...]``."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def wait_until(self, promql: str, holds: Any, within: float = 20.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``holds(result)``; AssertionError with the last result."""
        deadline = time.monotonic() + within
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                result = self.query(promql)
            except OSError:  # not listening yet
                result = []
            if holds(result):
                return result
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(f"{promql!r} never held within {within} s; last: {result}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(item["value"][1]) for item in result]
