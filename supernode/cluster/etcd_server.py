"""Local etcd processes on loopback: one member or an N-member cluster, for dev and tests.

``supernode dev-cluster`` and the cluster tests need a real etcd without any setup, so
:class:`LocalEtcd` installs Debian's ``etcd-server`` when it is missing
(:func:`supernode.debian.ensure_installed`), runs every member on free 127.0.0.1 ports with
its own data directory, and waits until each answers ``/health``. Tests kill a member
(SIGKILL, as a crash would) and restart it on the same data directory and ports.

:func:`member_command` is the one place that knows etcd's flags; the benchmarks' private
etcd uses it too, with its own :class:`EtcdSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from supernode.debian import ETCD_PACKAGE, ensure_installed

LOOPBACK = "127.0.0.1"
_HEALTH_POLL_S = 0.1
_HEALTH_REQUEST_TIMEOUT_S = 1.0
_STOP_GRACE_S = 5.0
_KILL_WAIT_S = 5.0
_PORT_ATTEMPTS = 3  # another process may take a chosen port before etcd binds it
_LOG_TAIL_BYTES = 3000
_LAYOUT_FILE = "layout.json"


class EtcdServerError(RuntimeError):
    """A local etcd member could not be started or did not become healthy (says why)."""


@dataclass(frozen=True)
class EtcdSettings:
    """How members behave (not where they listen). The defaults suit development and tests.

    Auto-compaction is off so tests decide when history goes (they call compact); the
    snapshot count is small so a restarted member replays a short WAL; ``warn`` keeps the
    logs to what matters. Heartbeat and election are etcd's defaults: shorter ones make a
    loaded 2-core machine elect spuriously, and they also set etcd's minimum lease TTL
    (1.5 election timeouts, rounded up: 2 s with these).
    """

    snapshot_count: int = 1000
    auto_compaction_retention: str = "0"
    max_txn_ops: int = 128
    max_request_bytes: int | None = None  # etcd's default (1.5 MiB)
    quota_backend_bytes: int | None = None  # etcd's default (2 GiB)
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    log_level: str = "warn"


@dataclass(frozen=True)
class EtcdTls:
    """Mutual TLS for every member, for clients and between members: etcd presents
    ``cert_file`` and accepts only clients (supernodes, ``supernode status``) and peers
    whose certificates chain to ``ca_file`` (``--client-cert-auth``). A certificate made
    by ``supernode certs`` serves both ways (server and client) for 127.0.0.1."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def flags(self) -> list[str]:
        cert, key, ca = str(self.cert_file), str(self.key_file), str(self.ca_file)
        return [
            "--cert-file", cert, "--key-file", key,
            "--client-cert-auth", "--trusted-ca-file", ca,
            "--peer-cert-file", cert, "--peer-key-file", key,
            "--peer-client-cert-auth", "--peer-trusted-ca-file", ca,
        ]  # fmt: skip

    def client_context(self) -> ssl.SSLContext:
        """What our health probe shows etcd: its CA, and the certificate it demands."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@dataclass(frozen=True)
class MemberSpec:
    """One member: its name, loopback ports and data directory."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    host: str = LOOPBACK
    scheme: str = "http"  # https with EtcdTls

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"

    @property
    def client_endpoint(self) -> str:
        """``host:port``, what a gRPC client dials."""
        return f"{self.host}:{self.client_port}"


def initial_cluster(members: Sequence[MemberSpec]) -> str:
    """The ``--initial-cluster`` value: every member's name and peer URL."""
    return ",".join(f"{member.name}={member.peer_url}" for member in members)


def member_command(
    binary: str,
    member: MemberSpec,
    cluster: Sequence[MemberSpec],
    settings: EtcdSettings,
    *,
    token: str | None = None,
    tls: EtcdTls | None = None,
) -> list[str]:
    """argv for ``member`` of ``cluster`` that listens only on its own host and ports
    (with ``tls``: mutual TLS on both, ``EtcdTls``).

    Every port is explicit: etcd's defaults (2379/2380) could belong to another instance.
    ``token`` (``--initial-cluster-token``) keeps two local clusters from ever joining each
    other. ``--initial-cluster-state new`` only matters on the first start: a member that
    finds its data directory rejoins with what it stored.
    """
    argv = [
        binary,
        "--name", member.name,
        "--data-dir", str(member.data_dir),
        "--listen-client-urls", member.client_url,
        "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url,
        "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", initial_cluster(cluster),
        "--initial-cluster-state", "new",
        "--snapshot-count", str(settings.snapshot_count),
        "--auto-compaction-retention", settings.auto_compaction_retention,
        "--max-txn-ops", str(settings.max_txn_ops),
        "--heartbeat-interval", str(settings.heartbeat_interval_ms),
        "--election-timeout", str(settings.election_timeout_ms),
        "--logger", "zap",
        "--log-outputs", "stderr",
        "--log-level", settings.log_level,
    ]  # fmt: skip
    if token is not None:
        argv += ["--initial-cluster-token", token]
    if tls is not None:
        argv += tls.flags()
    if settings.max_request_bytes is not None:
        argv += ["--max-request-bytes", str(settings.max_request_bytes)]
    if settings.quota_backend_bytes is not None:
        argv += ["--quota-backend-bytes", str(settings.quota_backend_bytes)]
    return argv


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports free on ``host`` now (all held until every one is chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so the member gets SIGTERM if our process dies (no orphan etcd).

    ``setpriv`` (util-linux) sets the parent-death signal and execs, so no Python runs
    between fork and exec. The signal is tied to the forking *thread*: spawn from the
    event loop's thread, never from a short-lived worker thread.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else list(argv)


def _healthy(url: str, context: ssl.SSLContext | None = None) -> bool:
    """One ``GET /health``: true once the member has a leader and no alarm."""
    try:
        with urllib.request.urlopen(
            url, timeout=_HEALTH_REQUEST_TIMEOUT_S, context=context
        ) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(body, dict) and body.get("health") == "true"


@dataclass(frozen=True)
class _Layout:
    """What must stay the same across restarts of one cluster: its token and ports."""

    token: str
    ports: tuple[tuple[int, int], ...]  # (client, peer) of each member

    @classmethod
    def fresh(cls, members: int, host: str) -> _Layout:
        ports = free_ports(2 * members, host)
        pairs = tuple((ports[2 * i], ports[2 * i + 1]) for i in range(members))
        return cls(f"supernode-{uuid.uuid4().hex[:12]}", pairs)

    def to_json(self) -> str:
        return json.dumps({"token": self.token, "ports": [list(pair) for pair in self.ports]})

    @classmethod
    def from_json(cls, text: str) -> _Layout:
        data = json.loads(text)
        ports = tuple((int(client), int(peer)) for client, peer in data["ports"])
        return cls(str(data["token"]), ports)


class _Member:
    """One member's spec, its process (while running) and its log file."""

    def __init__(self, spec: MemberSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self, argv: list[str]) -> None:
        self.spec.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in reap()
        self.process = subprocess.Popen(
            dying_with_parent(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the nodes, which stop while
            # etcd still answers; etcd is stopped after them.
            start_new_session=True,
        )

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-_LOG_TAIL_BYTES:].decode(errors="replace")

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def wait_exit(self, grace_s: float) -> bool:
        """Poll until the process has exited (without blocking the loop); False on timeout."""
        deadline = time.monotonic() + grace_s
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def reap(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalEtcd:
    """A local etcd of ``members`` members (1 for development, 3 to test failover).

    ``async with LocalEtcd(3) as etcd:`` starts it; :attr:`client_endpoints` is what the
    adapter connects to. With ``directory`` the data survive :meth:`stop` and the next start
    reuses the same ports (dev-cluster keeps its state); without, a temporary directory is
    used and removed.
    """

    def __init__(
        self,
        members: int = 1,
        *,
        directory: Path | None = None,
        settings: EtcdSettings | None = None,
        host: str = LOOPBACK,
        ready_timeout_s: float = 30.0,
        tls: EtcdTls | None = None,
    ) -> None:
        if members < 1:
            raise ValueError(f"an etcd cluster needs at least one member, got {members}")
        self.member_count = members
        self.settings = settings or EtcdSettings()
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.tls = tls
        self._given_directory = directory
        self._directory: Path | None = None
        self._token = ""
        self._binary: str | None = None
        self._members: list[_Member] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Install etcd if needed, start every member, return once each is healthy.

        Members start together (each waits for a quorum of its peers); a member that
        exits because a chosen port was taken meanwhile is retried on new ports.
        """
        if self._members:
            raise RuntimeError("local etcd already started")
        self._binary = await asyncio.to_thread(ensure_installed, ETCD_PACKAGE)
        if self._given_directory is not None:
            self._given_directory.mkdir(parents=True, exist_ok=True)
            self._directory = self._given_directory
        else:
            self._directory = Path(tempfile.mkdtemp(prefix="supernode-etcd-"))
        layout = self._saved_layout()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            reused = layout is not None
            layout = layout or _Layout.fresh(self.member_count, self.host)
            self._token = layout.token
            self._members = self._members_of(layout, self._directory)
            if self._given_directory is not None:
                (self._directory / _LAYOUT_FILE).write_text(layout.to_json())
            try:
                for member in self._members:
                    member.spawn(self._command(member))
                await self._wait_all_healthy()
                return
            except EtcdServerError as error:
                port_taken = "address already in use" in str(error)
                await self._stop_members()
                if reused or not port_taken or attempt == _PORT_ATTEMPTS:
                    await self.stop()
                    raise
                for member in self._members:  # never started: nothing to keep
                    shutil.rmtree(member.spec.data_dir, ignore_errors=True)
                layout = None
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL) and remove a temporary directory."""
        await self._stop_members()
        self._members = []
        directory, self._directory = self._directory, None
        if directory is not None and self._given_directory is None:
            shutil.rmtree(directory, ignore_errors=True)

    async def kill(self, member: int) -> None:
        """SIGKILL ``member`` (a crash: no graceful shutdown) and wait until it is gone."""
        target = self._member(member)
        target.signal(signal.SIGKILL)
        if not await target.wait_exit(_KILL_WAIT_S):
            raise EtcdServerError(f"etcd member {target.spec.name} survived SIGKILL")
        target.reap()

    async def restart(self, member: int) -> None:
        """Start ``member`` again on its data directory and ports (stopping it first if it
        still runs); return once it is healthy."""
        target = self._member(member)
        await self._stop_member(target)
        target.spawn(self._command(target))
        await self._wait_healthy(target)

    async def __aenter__(self) -> LocalEtcd:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ what clients see

    @property
    def client_endpoints(self) -> list[str]:
        """Every member's ``host:port``, in member order."""
        return [member.spec.client_endpoint for member in self._members]

    @property
    def specs(self) -> list[MemberSpec]:
        return [member.spec for member in self._members]

    def member_at(self, endpoint: str) -> int:
        """The index of the member serving ``endpoint`` (to kill the one a client uses)."""
        return self.client_endpoints.index(endpoint)

    def running(self, member: int) -> bool:
        return self._member(member).running

    # ------------------------------------------------------------------ internals

    def _saved_layout(self) -> _Layout | None:
        """The layout a kept directory was started with: its members must keep their ports
        (each stored its peers' URLs when the cluster was bootstrapped)."""
        if self._given_directory is None:
            return None
        path = self._given_directory / _LAYOUT_FILE
        try:
            layout = _Layout.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise EtcdServerError(f"unreadable etcd layout {path}: {error}") from error
        if len(layout.ports) != self.member_count:
            raise EtcdServerError(
                f"{self._given_directory} holds a {len(layout.ports)}-member etcd, not "
                f"{self.member_count}; use another directory or the same member count"
            )
        return layout

    def _members_of(self, layout: _Layout, directory: Path) -> list[_Member]:
        members = []
        for index, (client_port, peer_port) in enumerate(layout.ports):
            name = f"etcd{index}"
            spec = MemberSpec(
                name,
                client_port,
                peer_port,
                directory / name / "data",
                self.host,
                "http" if self.tls is None else "https",
            )
            members.append(_Member(spec, directory / name / "etcd.log"))
        return members

    def _command(self, member: _Member) -> list[str]:
        assert self._binary is not None
        return member_command(
            self._binary, member.spec, self.specs, self.settings, token=self._token, tls=self.tls
        )

    def _member(self, index: int) -> _Member:
        if not 0 <= index < len(self._members):
            raise IndexError(f"no etcd member {index} (started: {len(self._members)})")
        return self._members[index]

    async def _wait_healthy(self, member: _Member) -> None:
        url = f"{member.spec.client_url}/health"
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            process = member.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise EtcdServerError(
                    f"etcd member {member.spec.name} exited with code {code} before it was "
                    f"healthy; its log ({member.log_path}) ends:\n{member.log_tail()}"
                )
            context = None if self.tls is None else self.tls.client_context()
            if await asyncio.to_thread(_healthy, url, context):
                return
            if time.monotonic() >= deadline:
                raise EtcdServerError(
                    f"etcd member {member.spec.name} not healthy at {url} after "
                    f"{self.ready_timeout_s:.0f} s; its log ends:\n{member.log_tail()}"
                )
            await asyncio.sleep(_HEALTH_POLL_S)

    async def _wait_all_healthy(self) -> None:
        """Wait for every member; the first failure cancels the other waits and is raised."""
        waits = [asyncio.ensure_future(self._wait_healthy(m)) for m in self._members]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
            for wait in done:
                wait.result()
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _stop_member(self, member: _Member) -> None:
        member.signal(signal.SIGTERM)
        if not await member.wait_exit(_STOP_GRACE_S):
            member.signal(signal.SIGKILL)
            await member.wait_exit(_KILL_WAIT_S)
        member.reap()

    async def _stop_members(self) -> None:
        # One at a time: a leader stopped while its peers stop too tries to hand leadership
        # to a dying peer and only exits after the grace; in turn, each exits in ~20 ms.
        for member in self._members:
            await self._stop_member(member)
