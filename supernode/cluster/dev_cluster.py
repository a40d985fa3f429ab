"""``supernode dev-cluster``: a local etcd and N ``supernode serve`` nodes, one command.

For development and demos only: everything binds to 127.0.0.1. etcd comes from
:class:`~supernode.cluster.etcd_server.LocalEtcd` (its data under ``<data-dir>/etcd``, so a
second run finds the cluster it left); node ``i`` is ``python -m supernode.cli serve`` with
its own data directory ``<data-dir>/node-<i>``, gRPC on ``base_port + i`` (its name in the
cluster), metrics and STUN on their own ports, and its stderr in ``<data-dir>/node-<i>/
serve.log``.

Each node runs in its own session, so a Ctrl-C in the terminal does not reach it: this
process stops the nodes (SIGTERM, then SIGKILL to each one's process group after a grace)
and etcd last, so nodes can leave while etcd still hears them. (etcd itself is in our
process group and gets the terminal's Ctrl-C too; the nodes then stop without it, which
only costs them their etcd timeout.) Every child is started with a parent-death signal
(``dying_with_parent``), so none outlives a killed dev-cluster.

A running dev-cluster writes its pid to ``<data-dir>/dev-cluster.pid``; SIGHUP makes it
restart every node in turn by the rolling-restart procedure (``supernode.cluster.rolling``),
logging each step to ``<data-dir>/rolling-restart.log``. ``supernode dev-cluster
--rolling-restart`` sends that signal and follows the log until the restart is done.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

from supernode.certs import CA_FILE, SDK_CA_FILE, ensure_node, node_file_names
from supernode.cluster.etcd_server import EtcdServerError, EtcdTls, LocalEtcd, dying_with_parent
from supernode.cluster.rolling import Restarted, RollingRestartError, rolling_restart
from supernode.debian import PackageError

T = TypeVar("T")

_READY = re.compile(r"supernode ready (\{.*\})")
_TAIL_LINES = 40
_LINE_LIMIT = 1 << 20  # a traceback line can be long; asyncio's default limit is 64 KiB
_DRAIN_S = 5.0


@dataclass(frozen=True)
class DevClusterPlan:
    """What to start. Port bases of 0 mean a free port for every node."""

    nodes: int
    base_port: int = 7701
    metrics_base_port: int = 9701
    stun_base_port: int = 3479
    data_dir: Path = Path("dev-cluster")
    serve_args: tuple[str, ...] = ()  # forwarded after ours, so they override them
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 15.0  # above serve's default shutdown grace (10 s)
    # TLS for clients and mutual TLS between nodes and to etcd, with certificates made
    # into <data-dir>/certs on the first run (supernode.certs); False: plaintext throughout.
    tls: bool = True

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"--nodes: {self.nodes}, need at least 1")
        for name in ("base_port", "metrics_base_port", "stun_base_port"):
            base = getattr(self, name)
            if not (base == 0 or (base >= 1 and base + self.nodes - 1 <= 65535)):
                raise ValueError(f"{name}: {base} leaves no room for {self.nodes} ports")

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"

    def node_certificate(self, index: int) -> tuple[Path, Path]:
        cert, key = node_file_names(f"node-{index}")
        return (self.certs_dir / cert).resolve(), (self.certs_dir / key).resolve()

    def etcd_tls(self) -> EtcdTls | None:
        """Make what TLS needs (once; kept across runs) and etcd's part of it."""
        if not self.tls:
            return None
        for index in range(self.nodes):
            ensure_node(self.certs_dir, f"node-{index}")
        cert, key = ensure_node(self.certs_dir, "etcd")
        return EtcdTls(cert.resolve(), key.resolve(), (self.certs_dir / CA_FILE).resolve())

    def tls_args(self, index: int) -> list[str]:
        """Node ``index``'s transport flags (its certificate, or explicit plaintext)."""
        if not self.tls:
            return ["--tls-plaintext"]
        cert, key = self.node_certificate(index)
        ca = (self.certs_dir / CA_FILE).resolve()
        return ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-file", str(ca)]

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "dev-cluster.pid"

    @property
    def restart_log(self) -> Path:
        return self.data_dir / "rolling-restart.log"

    def node_dir(self, index: int) -> Path:
        return self.data_dir / f"node-{index}"

    def serve_argv(self, index: int, etcd_endpoints: Sequence[str]) -> list[str]:
        """The ``serve`` command of node ``index`` (cluster settings at their defaults,
        overridable after ``--``)."""
        return [
            sys.executable, "-m", "supernode.cli", "serve",
            "--data-dir", str(self.node_dir(index).resolve()),
            "--listen", _loopback(self.base_port, index),
            "--metrics-listen", _loopback(self.metrics_base_port, index),
            "--stun-listen", _loopback(self.stun_base_port, index),
            "--cluster-etcd-endpoints", ",".join(etcd_endpoints),
            *self.tls_args(index),
            *self.serve_args,
        ]  # fmt: skip


def _loopback(base: int, index: int) -> str:
    return f"127.0.0.1:{base + index if base else 0}"


def parse_ready(line: str) -> dict[str, Any] | None:
    """The JSON of a ``supernode ready {...}`` log line, or None for any other line."""
    match = _READY.search(line)
    if match is None:
        return None
    try:
        info = json.loads(match.group(1))
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def instructions(
    etcd_endpoint: str,
    etcd_dir: Path,
    nodes: Sequence[ServeProcess],
    plan: DevClusterPlan | None = None,
) -> str:
    """What the user sees once everything is up: each process, then how to use them."""
    grpc = [str(node.info.get("grpc", "")) for node in nodes]
    width = max(len(address) for address in [etcd_endpoint, *grpc])
    names = max(len(name) for name in ["etcd", *(node.name for node in nodes)])
    lines = [f"supernode dev-cluster: etcd and {len(nodes)} nodes are up"]
    lines.append(f"  {'etcd':<{names}}  {etcd_endpoint:<{width}}  data {etcd_dir}")
    for node, address in zip(nodes, grpc, strict=True):
        lines.append(
            f"  {node.name:<{names}}  {address:<{width}}  pid {node.info.get('pid')}  "
            f"metrics {node.info.get('metrics')}  stun {node.info.get('stun') or '-'}  "
            f"log {node.log_path}"
        )
    config, status_tls = "ClientConfig(plaintext=True)", ""
    if plan is not None and plan.tls:
        sdk_ca = (plan.certs_dir / SDK_CA_FILE).resolve()
        config = f'ClientConfig(tls=Tls(ca_file="{sdk_ca}"))'
        status_tls = " " + " ".join(plan.tls_args(0))
    lines += [
        "Point the SDK at the nodes:",
        f"  Client({json.dumps(grpc)}, identity, handle, config={config})",
        "See the cluster:",
        f"  supernode status --etcd-endpoints {etcd_endpoint}{status_tls}",
        "Restart every node in turn (a rolling restart):",
        f"  supernode dev-cluster --rolling-restart --data-dir {_data_dir_of(etcd_dir)}",
        "Ctrl-C stops every node and etcd.",
    ]
    return "\n".join(lines) + "\n"


def _data_dir_of(etcd_dir: Path) -> Path:
    return etcd_dir.parent


class ServeProcess:
    """One ``supernode serve`` child: its log file, the tail kept for a report, its ready line."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.info: dict[str, Any] = {}  # the ready line's JSON, once it was logged
        self._ready = asyncio.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self) -> None:
        self.info = {}
        self._ready = asyncio.Event()
        self._log = self._open_log()
        self._process = await asyncio.create_subprocess_exec(
            *dying_with_parent(self.argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            limit=_LINE_LIMIT,
        )
        self._pump = asyncio.create_task(self._read_stderr(), name=f"{self.name} log")

    def _open_log(self) -> IO[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.log_path, "ab")

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        assert self._log is not None
        while line := await self._process.stderr.readline():
            self._log.write(line)
            self._log.flush()
            text = line.decode(errors="replace")
            self._tail.append(text)
            if not self._ready.is_set() and (info := parse_ready(text)) is not None:
                self.info = info
                self._ready.set()

    async def wait_ready(self) -> bool:
        """True once the ready line was logged; False if stderr closed first (it exited)."""
        assert self._pump is not None
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, self._pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self._ready.is_set()

    async def wait_exit(self) -> ServeProcess:
        """Return (self) once the process exited and its log was read to the end."""
        assert self._process is not None
        await self._process.wait()
        await self._drain()
        return self

    def log_tail(self) -> str:
        return "".join(self._tail)

    async def stop(self, grace_s: float) -> bool:
        """SIGTERM (a graceful shutdown); after ``grace_s`` SIGKILL to its whole process
        group, so its workers go too. False if it had to be killed."""
        graceful = True
        process = self._process
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await process.wait()
            if process.returncode is None:
                graceful = False
                self._kill_group()
                await process.wait()
            await self._drain()
        if self._log is not None:
            self._log.close()
            self._log = None
        return graceful

    async def _drain(self) -> None:
        """Read stderr to its end. Children of the node that still hold it open after the
        node exited (workers it could not stop) are killed with its process group."""
        assert self._pump is not None
        try:
            async with asyncio.timeout(_DRAIN_S):
                await asyncio.shield(self._pump)
        except TimeoutError:
            self._kill_group()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_S):
                    await asyncio.shield(self._pump)
            self._pump.cancel()

    def _kill_group(self) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)


class _DevNode:
    """A dev-cluster node as the rolling restart sees it."""

    def __init__(self, process: ServeProcess, plan: DevClusterPlan) -> None:
        self.process, self.plan = process, plan

    @property
    def name(self) -> str:
        return self.process.name

    async def stop(self) -> None:
        await self.process.stop(self.plan.stop_grace_s)

    async def start(self) -> None:
        await self.process.start()
        async with asyncio.timeout(self.plan.ready_timeout_s):
            ready = await self.process.wait_ready()
        if not ready:
            await self.process.wait_exit()
            raise RollingRestartError(
                f"{self.name} exited while starting; its log ({self.process.log_path}) ends:\n"
                f"{self.process.log_tail()}"
            )

    async def metrics(self) -> str:
        address = self.process.info.get("metrics")
        if not address:
            raise OSError(f"{self.name} has no metrics address yet")
        return await asyncio.to_thread(_fetch, f"http://{address}/metrics")


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _rolling(nodes: Sequence[ServeProcess], plan: DevClusterPlan, out: TextIO) -> None:
    """Restart every node in turn, each step on ``out`` and in the restart log."""

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()
        with open(plan.restart_log, "a") as log:  # a line at a time: the requester tails it
            log.write(line + "\n")

    def report(restarted: Restarted) -> None:
        say(
            f"restarted {restarted.name}: serving again {restarted.down_s:.1f} s after "
            f"its stop, cluster whole {restarted.caught_up_s:.1f} s later"
        )

    say(f"rolling restart of {len(nodes)} nodes")
    try:
        await rolling_restart([_DevNode(node, plan) for node in nodes], report=report)
    except (RollingRestartError, TimeoutError, OSError) as exc:
        say(f"failed: {' '.join(str(exc).split())}")
        return
    say("done")


def request_rolling_restart(data_dir: Path, timeout_s: float, out: TextIO, err: TextIO) -> int:
    """``supernode dev-cluster --rolling-restart``: signal the running dev-cluster of
    ``data_dir`` and print its restart log until it is done (0) or failed (1)."""
    plan = DevClusterPlan(nodes=1, data_dir=data_dir)
    try:
        pid = int(plan.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        print(f"supernode dev-cluster: no dev-cluster running from {data_dir}", file=err)
        return 1
    offset = plan.restart_log.stat().st_size if plan.restart_log.exists() else 0
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if plan.restart_log.exists():
            with open(plan.restart_log) as log:
                log.seek(offset)
                for line in log.read().splitlines(keepends=True):
                    if not line.endswith("\n"):
                        break  # the rest of the line is still being written
                    offset += len(line)
                    out.write(line)
                    out.flush()
                    if line.startswith("done"):
                        return 0
                    if line.startswith("failed"):
                        return 1
        time.sleep(0.2)
    print(f"supernode dev-cluster: the rolling restart took over {timeout_s:g} s", file=err)
    return 1


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop everything, exit 0."""


async def _unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T:
    """The awaitable's result, or :class:`_Stopped` (with it cancelled) if a stop came first."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work  # let it clean up (LocalEtcd.start stops what it started)
    if work.cancelled():
        raise _Stopped
    return work.result()


async def _first_not_ready(nodes: Sequence[ServeProcess]) -> ServeProcess | None:
    """None once every node is ready; else the first one that exited before it was."""
    waits = {asyncio.ensure_future(node.wait_ready()): node for node in nodes}
    pending = set(waits)
    try:
        while pending:  # each round removes at least one
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for wait in done:
                if not wait.result():
                    return waits[wait]
    finally:
        for wait in waits:
            wait.cancel()
    return None


async def _first_exit(nodes: Sequence[ServeProcess], restart: asyncio.Event) -> ServeProcess | None:
    """The first node that exits, or None when a rolling restart is asked for first."""
    exits = [asyncio.ensure_future(node.wait_exit()) for node in nodes]
    asked = asyncio.ensure_future(restart.wait())
    try:
        await asyncio.wait([*exits, asked], return_when=asyncio.FIRST_COMPLETED)
        exited = [task for task in exits if task.done()]
        return exited[0].result() if exited else None
    finally:
        asked.cancel()
        for wait in exits:
            wait.cancel()


async def _all_ready(
    nodes: Sequence[ServeProcess], timeout_s: float, stop: asyncio.Event, err: TextIO
) -> bool:
    """True once every node logged its ready line; else False, with the log tail of the
    node that exited first (or of every node not ready in time) on ``err``."""
    try:
        async with asyncio.timeout(timeout_s):
            failed = await _unless_stopped(stop, _first_not_ready(nodes))
    except TimeoutError:
        for node in nodes:
            if not node.info:
                print(
                    f"supernode dev-cluster: {node.name} not ready after {timeout_s:g} s; "
                    f"its log ({node.log_path}) ends:\n{node.log_tail()}",
                    file=err,
                    flush=True,
                )
        return False
    if failed is not None:
        await failed.wait_exit()
        _report_exit(failed, "before it was ready", err)
        return False
    return True


def _report_exit(node: ServeProcess, when: str, err: TextIO) -> None:
    print(
        f"supernode dev-cluster: {node.name} exited with code {node.returncode} {when}; "
        f"its log ({node.log_path}) ends:\n{node.log_tail()}",
        file=err,
        flush=True,
    )


async def run(plan: DevClusterPlan, out: TextIO, err: TextIO) -> int:
    """Start etcd and the nodes, print how to use them, stop everything on a signal.

    0 after a SIGINT/SIGTERM; 1 when something failed to start or a node exited on its own
    (its log tail is printed and everything else is stopped).
    """
    stop, restart = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, restart.set)
    etcd_dir = (plan.data_dir / "etcd").resolve()
    nodes: list[ServeProcess] = []
    try:
        etcd_tls = await asyncio.to_thread(plan.etcd_tls)
    except (OSError, ValueError) as exc:
        print(f"supernode dev-cluster: certificates in {plan.certs_dir}: {exc}", file=err)
        return 1
    etcd = LocalEtcd(1, directory=etcd_dir, tls=etcd_tls)
    try:
        await _unless_stopped(stop, etcd.start())
        endpoints = etcd.client_endpoints
        for index in range(plan.nodes):
            log_path = plan.node_dir(index) / "serve.log"
            nodes.append(ServeProcess(f"node-{index}", plan.serve_argv(index, endpoints), log_path))
            await nodes[-1].start()
        if not await _all_ready(nodes, plan.ready_timeout_s, stop, err):
            return 1
        out.write(instructions(endpoints[0], etcd_dir, nodes, plan))
        out.flush()
        plan.pid_file.write_text(str(os.getpid()))
        while (exited := await _unless_stopped(stop, _first_exit(nodes, restart))) is None:
            restart.clear()
            await _unless_stopped(stop, _rolling(nodes, plan, out))
        _report_exit(exited, "while the cluster ran", err)
        return 1
    except _Stopped:
        return 0
    except (EtcdServerError, PackageError, OSError) as exc:
        print(f"supernode dev-cluster: {exc}", file=err, flush=True)
        return 1
    finally:
        print("supernode dev-cluster: stopping", file=err, flush=True)
        graceful = await asyncio.gather(*(node.stop(plan.stop_grace_s) for node in nodes))
        for node, stopped in zip(nodes, graceful, strict=True):
            if not stopped:
                print(
                    f"supernode dev-cluster: {node.name} did not stop within "
                    f"{plan.stop_grace_s:g} s of SIGTERM and was killed (log {node.log_path})",
                    file=err,
                    flush=True,
                )
        await etcd.stop()
        plan.pid_file.unlink(missing_ok=True)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def run_dev_cluster(plan: DevClusterPlan, out: TextIO, err: TextIO) -> int:
    """``supernode dev-cluster``: :func:`run` in its own event loop."""
    return asyncio.run(run(plan, out, err))
