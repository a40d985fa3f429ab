"""Real supernode processes on loopback for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.integration.metrics import sample

_READY = re.compile(r"supernode ready (\{.*\})")
PLAINTEXT = "--tls-plaintext"


class SupernodeProcess:
    """``supernode serve`` in a subprocess on free loopback ports, with its log captured."""

    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        python: str = sys.executable,
        cwd: Path | None = None,
        rate_limits: bool = False,
    ) -> None:
        """``python`` and ``cwd`` run another installation (say a fresh virtualenv's).

        ``rate_limits``: keep the per-account and per-source rate limits
        (``supernode.rate``) on. Off by default: the suite drives many users' calls from
        one loopback address and a few accounts; tests/integration/test_rate_limits.py
        and the flood tests turn them on."""
        self.rate_limits = rate_limits
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.python = python
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self.grpc_target = ""
        self.metrics_url = ""
        self.stun_address = ""
        self.workers: list[dict[str, object]] = []
        self.ready: dict[str, object] = {}  # the whole ready line (tls, peer port, ...)
        self.log: list[str] = []

    def start(self, timeout: float = 30.0) -> SupernodeProcess:
        # Plaintext on loopback, said explicitly as a node requires (supernode.tls), unless
        # the test configures transport security itself (any --tls-... flag).
        plaintext = [] if any(a.startswith("--tls-") for a in self.extra_args) else [PLAINTEXT]
        command = [
            self.python,
            "-m",
            "supernode.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--stun-listen",
            "127.0.0.1:0",
            *(() if self.rate_limits else ("--no-rate-enabled",)),
            *plaintext,
            *self.extra_args,
        ]
        self.log = []
        self.process = subprocess.Popen(
            command,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=self.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        threading.Thread(target=self._read_log, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or not self.grpc_target:
            self.kill()
            raise RuntimeError("supernode did not become ready:\n" + "".join(self.log))
        return self

    def _read_log(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            match = _READY.search(_message(line))
            if match:
                info = json.loads(match.group(1))
                self.ready = info
                self.grpc_target = info["grpc"]
                self.metrics_url = f"http://{info['metrics']}/metrics"
                self.stun_address = str(info["stun"])
                self.workers = list(info.get("workers", []))
                ready.set()
        ready.set()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the exit code of a graceful shutdown."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def metrics(self) -> str:
        """The primary's /metrics: the node's gauges, and the calls this process served."""
        return _scrape(self.metrics_url)

    def metrics_urls(self) -> list[str]:
        """/metrics of every process of the node: the primary's, then each worker's."""
        return [self.metrics_url] + [f"http://{w['metrics']}/metrics" for w in self.workers]

    def total(self, name: str, **labels: str) -> float:
        """One sample summed over the node's processes: with ``--workers`` a worker counts
        the calls it answers itself (lookups) on its own /metrics, so a call counter of the
        node is this sum (a gauge such as ``supernode_accounts`` is the primary's alone)."""
        return sum(sample(_scrape(url), name, **labels) for url in self.metrics_urls())

    def calls(self, method: str, *codes: str) -> float:
        """Calls of ``method`` the node answered with any of ``codes`` (default OK), summed
        over its processes."""
        return sum(
            self.total("supernode_rpc_requests_total", method=method, code=code)
            for code in codes or ("OK",)
        )

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.log):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in log:\n" + "".join(self.log))


def _message(line: str) -> str:
    """The message of a log line: the line itself, or a JSON line's ``msg``
    (``--log-format json``)."""
    if line.startswith("{"):
        try:
            return str(json.loads(line).get("msg", line))
        except ValueError:
            pass
    return line


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
