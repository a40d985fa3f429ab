"""Third-party servers (etcd, Redis) run as baselines: install, start, load, stop.

The benchmark compares the supernode against servers it does not ship, so the project's own
code installs them (Debian packages, as root) and runs private instances on free loopback
ports with throwaway data directories. What is specific to one server (command line, client,
load format) lives in ``benchmarks/systems/<name>.py``; what they share lives here, mostly in
:class:`ManagedServerSystem`. The process itself is a
:class:`benchmarks.systems.process.ServerProcess`, as for the supernode: ready when its log
says so, SIGTERM then SIGKILL on stop, and SIGTERM if the benchmark dies first.

Every system stores the same (key, value) pairs, read from the run's generate-once cache
(:func:`benchmarks.generate.lookup_pairs`); :func:`load_items` streams any iterable of pairs
into one or several systems.

Load times measured on the 2-core machine (users of ~580 bytes; generation not included): Redis
~240k users/s and etcd ~76k users/s from pairs in memory (200k users: 0.8 s and 2.6 s); from
the cache file, whose reading competes for the GIL, 10k users took 0.4 s (Redis) and 0.7 s
(etcd), 200k users 2.0 s and 4.1 s (6.6 s and 17 s while other benchmarks ran). 1M users
generated and loaded into both in one pass took 148 s (generation-bound). Expect 10M users to
take 2-5 min per system once the cache exists (generating it costs ~20-30 min, once), and ~7 GB
of memory for Redis and ~10 GB for etcd (its bbolt file is ~7 GB, mapped; raft entries on top).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import ClassVar, Protocol

from benchmarks import generate
from benchmarks.dataset import Dataset
from benchmarks.systems.base import ClientSpec
from benchmarks.systems.process import ServerProcess

# The installer moved to supernode.debian (the cluster installs etcd too); the names the
# benchmark tests use stay importable from here.
from supernode.debian import DebianPackage, PackageError, ensure_installed
from supernode.debian import all_pids as _all_pids  # noqa: F401
from supernode.debian import apt_commands as apt_commands
from supernode.debian import stop_new_processes as stop_new_processes

Item = tuple[str, bytes]
"""A user's key (its handle) and value (its serialized ``LookupResponse``)."""

LOOPBACK = "127.0.0.1"
_PROBE_TIMEOUT_S = 10.0
_STOP_GRACE_S = 10.0


# A baseline that could not be installed is, to a benchmark, the same failure as one that
# could not be started or loaded: one error class for all three.
ServiceError = PackageError
"""A baseline server could not be installed, started or loaded (the message says why)."""


# --------------------------------------------------------------------------- packages

# etcd's package is supernode.debian.ETCD_PACKAGE; Redis is the benchmarks' alone.
REDIS_PACKAGE = DebianPackage("redis-server", "redis-server", "redis-server")


# --------------------------------------------------------------------------- processes


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the same
    port twice. Another process could still take one before our server binds it; the server
    then exits before it is ready, and the error carries its last log lines.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def split_target(target: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"target must be host:port, got {target!r}")
    return host, int(port)


# --------------------------------------------------------------------------- data


def take(iterator: Iterator[Item], count: int) -> list[Item]:
    """The next ``count`` items (fewer at the end, empty when exhausted)."""
    return list(islice(iterator, count))


class BulkLoader(Protocol):
    async def load_batch(self, items: Sequence[Item]) -> None:
        """Store every pair of ``items``, returning once the server has acknowledged them."""


async def load_items(
    loaders: Sequence[BulkLoader], items: Iterable[Item], *, batch: int = 10_000
) -> int:
    """Stream ``items`` into every loader; return how many pairs were loaded.

    The next batch is pulled in a thread (pulling may read a cache file or wait on a
    generator) while the current one is being stored, and all loaders store each batch
    concurrently, so one pass over the data set fills several systems.
    """
    iterator = iter(items)
    loaded = 0
    upcoming = asyncio.ensure_future(asyncio.to_thread(take, iterator, batch))
    try:
        while current := await upcoming:
            upcoming = asyncio.ensure_future(asyncio.to_thread(take, iterator, batch))
            await asyncio.gather(*(loader.load_batch(current) for loader in loaders))
            loaded += len(current)
    finally:
        upcoming.cancel()  # on failure only; the pulling thread itself runs to its end
    return loaded


# --------------------------------------------------------------------------- systems


class ManagedServerSystem(ABC):
    """A :class:`~benchmarks.systems.base.System` backed by one server process we start.

    Subclasses say how to run the server (:meth:`command`, :attr:`ready_line`), talk to it
    (:meth:`_connect`, :meth:`_probe`, :meth:`_disconnect`), store a batch
    (:meth:`load_batch`) and which workloads it offers. :meth:`start` launches and loads the
    run's cached data set; to fill several systems in one pass, :meth:`launch` each and call
    :func:`load_items` once.
    """

    name: ClassVar[str]
    package: ClassVar[DebianPackage]
    port_count: ClassVar[int] = 1
    ready_line: ClassVar[re.Pattern[str]]  # printed once the server serves clients
    log_stream: ClassVar[str] = "stderr"

    def __init__(
        self,
        *,
        cache_dir: Path = generate.CACHE_DIR,
        host: str = LOOPBACK,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.cache_dir = cache_dir
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.ports: list[int] = []
        self.loaded_users = 0
        self.load_seconds = 0.0
        self._dir: Path | None = None
        self._server: ServerProcess | None = None

    @property
    def target(self) -> str:
        """``host:port`` clients connect to."""
        if not self.ports:
            raise RuntimeError(f"{self.name} not launched")
        return f"{self.host}:{self.ports[0]}"

    @property
    def data_dir(self) -> Path:
        """The server's temporary directory (its working directory; removed by stop)."""
        if self._dir is None:
            raise RuntimeError(f"{self.name} not launched")
        return self._dir

    @abstractmethod
    def command(self, binary: str, data_dir: Path, ports: Sequence[int]) -> list[str]:
        """The server's argv: listen on ``self.host`` at ``ports``, keep state in ``data_dir``."""

    @abstractmethod
    async def _connect(self) -> None:
        """Open the orchestrator's own connection (used by the probe and by loading)."""

    @abstractmethod
    async def _probe(self) -> None:
        """One real request through that connection; raises if the server does not serve."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close what :meth:`_connect` opened (must be safe if it never ran)."""

    @abstractmethod
    async def load_batch(self, items: Sequence[Item]) -> None:
        """Store ``items``; see :class:`BulkLoader`."""

    @abstractmethod
    def workloads(self) -> list[ClientSpec]:
        """The workloads this system offers, in run order."""

    async def launch(self) -> None:
        """Install if needed, start the server on free loopback ports, wait until it answers."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already launched")
        self._dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        try:
            self.ports = free_ports(self.port_count, self.host)
            await self._run_server(self.ready_timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _run_server(self, ready_timeout_s: float) -> None:
        """Start the server on ``self.ports`` over ``self.data_dir``; return once it answers."""
        binary = await asyncio.to_thread(ensure_installed, self.package)
        # Started from the event loop's thread: the child's parent-death signal is tied to
        # the thread that forks it, and this one lives as long as the benchmark.
        self._server = ServerProcess(
            self.command(binary, self.data_dir, self.ports),
            self.ready_line,
            stream=self.log_stream,
            cwd=self.data_dir,
        )
        await self._server.wait_ready(ready_timeout_s)
        await self._connect()
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await self._probe()

    async def restart(self, ready_timeout_s: float) -> None:
        """Stop the server and start it again on the same ports and data: what it serves
        then is what it stored, with none of the state the loading left in its memory."""
        server, self._server = self._server, None
        if server is None:
            raise RuntimeError(f"{self.name} not launched")
        try:
            await self._disconnect()
            await server.stop(_STOP_GRACE_S)
            await self._run_server(ready_timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def after_load(self) -> None:
        """What the server needs between loading and being measured (nothing by default)."""
        return None

    async def load(self, items: Iterable[Item]) -> int:
        """Store every (key, value) pair of ``items``; return how many."""
        started = time.monotonic()
        loaded = await load_items([self], items)
        self.loaded_users += loaded
        self.load_seconds += time.monotonic() - started
        return loaded

    async def start(self, dataset: Dataset) -> None:
        """Launch, then load every user of ``dataset`` from the generate-once cache."""
        await self.launch()
        try:
            pairs = chain.from_iterable(generate.lookup_pairs(dataset, cache_dir=self.cache_dir))
            if await self.load(pairs) != dataset.users:
                raise ServiceError(f"{self.name}: loaded {self.loaded_users} of {dataset.users}")
            await self.after_load()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close our connection, stop the server (SIGTERM, then SIGKILL), delete its data."""
        server, self._server = self._server, None
        directory, self._dir = self._dir, None
        try:
            await self._disconnect()
        finally:
            if server is not None:
                await server.stop(_STOP_GRACE_S)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    def server_pids(self) -> list[int]:
        """The server's PID (read its CPU time from ``/proc/<pid>/stat``)."""
        return [self._server.pid] if self._server is not None else []
