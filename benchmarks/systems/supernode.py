"""The system under test: one ``supernode serve`` process over a pre-loaded data directory.

Registering a million users through the API would take hours of signature checks, so the
data set is written straight into a fresh RocksDB directory with ``supernode.store.Store``
(the same calls the server makes on registration) before the server starts. Clients then
authenticate as one real account, created and logged in through the API.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import generate
from benchmarks.dataset import LEASE_MS, Dataset
from benchmarks.native import metrics_url
from benchmarks.native_drivers import GrpcDriver, KeysByBatch, NativeWorkload
from benchmarks.systems.base import ClientSpec
from benchmarks.systems.grpc_raw import RawUnaryClient, bearer, request_encoder
from benchmarks.systems.process import ServerProcess
from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from supernode.directory import search
from supernode.directory.account_record import AccountRecord
from supernode.store import Store

PRESENCE = "/supernode.v1.PresenceService"
BATCHES = (1, 10, 100)
# Not of the data set's form (userNNNNNNNNN), so it never collides with a loaded user.
BENCH_HANDLE = "bench-client"
READY = re.compile(r"supernode ready (\{.*\})")
# Opening a large store counts every live device once; allow for ten million users.
_READY_TIMEOUT_S = 600.0


def plaintext_flags(tree: Path | None) -> list[str]:
    """Plaintext on loopback, as every baseline was measured; said explicitly, as a node
    requires since TLS came (``tree``: an older checkout without supernode/tls.py, which
    knows no such flag)."""
    if tree is not None and not (tree / "supernode" / "tls.py").exists():
        return []
    return ["--tls-plaintext"]


def workload_name(batch: int) -> str:
    return "lookup" if batch == 1 else f"lookup-many-{batch}"


def method_path(batch: int) -> str:
    return f"{PRESENCE}/Lookup" if batch == 1 else f"{PRESENCE}/LookupMany"


def search_terms(account_raw: bytes) -> list[str]:
    """The index terms ``Accounts.create`` would store with this account."""
    account = pb.Account.FromString(account_raw)
    if not account.discoverable:
        return []
    return search.index_terms(account.handle, account.display_name)


def load_store(data_dir: Path, dataset: Dataset, lease_from_ms: int) -> int:
    """Write every user of ``dataset`` into a new store at ``data_dir``; returns the count.

    The same writes as registering through the API (account with its search terms, then
    each device with no previous record), minus the signature checks.
    """
    store = Store(data_dir)
    loaded = 0
    try:
        for chunk in generate.user_chunks(dataset, lease_from_ms=lease_from_ms):
            for user in chunk:
                # Unsigned (the data set's accounts have no CreateAccount signature), so
                # served as accounts stored before signatures were kept: same bytes as
                # the other systems serve.
                stored = AccountRecord(user.account)
                if not store.insert_account(user.handle, stored, search_terms(user.account)):
                    raise ValueError(f"{data_dir}: {user.handle} loaded twice")
                for device_id, seq, device in user.devices:
                    store.put_device(
                        user.handle,
                        device_id,
                        seq=seq,
                        expires_at_ms=pb.Device.FromString(device).expires_at_ms,
                        device=device,
                        previous=None,
                    )
            loaded += len(chunk)
        store.compact()  # as an operator would after a bulk import: no compaction mid-run
    finally:
        store.close()
    return loaded


def server_argv(data_dir: Path, workers: int, tree: Path | None = None) -> list[str]:
    """The installed ``supernode`` script beside this interpreter, else the module.

    ``tree``: the server code of another checkout (an older revision in a git worktree),
    run by this interpreter as a module with the checkout first on ``PYTHONPATH``; start
    it with the checkout as its working directory.
    """
    script = Path(sys.executable).with_name("supernode")
    if tree is not None:
        command = ["env", f"PYTHONPATH={tree}", sys.executable, "-m", "supernode.cli"]
    elif script.exists():
        command = [str(script)]
    else:
        command = [sys.executable, "-m", "supernode.cli"]
    # Rate limits off by the environment (an older checkout ignores the variable): one
    # benchmark client drives the load of thousands of users from one address.
    plaintext = plaintext_flags(tree)
    return [
        "env", "SUPERNODE_RATE_ENABLED=false",
        *command,
        "serve",
        *plaintext,
        "--data-dir", str(data_dir),
        "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0",
        "--stun-listen", "127.0.0.1:0",  # never the fixed default port: it may be taken
        "--lease-max-ttl-seconds", "3600",
        "--workers", str(workers),
    ]  # fmt: skip


class SupernodeClient(RawUnaryClient):
    def __init__(self, spec: ClientSpec) -> None:
        super().__init__(
            spec.target,
            method_path(spec.batch),
            request_encoder(spec.batch),
            bearer(spec.options["token"]),
        )


async def login_bench_client(target: str) -> str:
    """A real account and session: lookups pay the same token check as any client's."""
    identity = Identity.generate()
    async with DirectoryConnection(target) as connection:
        await connection.create_account(identity, BENCH_HANDLE, "Benchmark client")
        await connection.login(identity, BENCH_HANDLE)
        assert connection.token is not None
        return connection.token


class SupernodeSystem:
    name = "supernode"

    def __init__(
        self, workers: int = 1, *, name: str = "supernode", tree: Path | None = None
    ) -> None:
        """``workers``: processes serving the port (``supernode serve --workers``);
        ``name``: the system's name in figures; ``tree``: serve another checkout's code
        (see :func:`server_argv`)."""
        self.name = name
        self.tree = tree
        self.workers = workers
        self._worker_pids: list[int] = []
        self._process: ServerProcess | None = None
        self._data_dir: Path | None = None
        self._target = ""
        self._token = ""
        # host:port of its Prometheus endpoint: what a generator that sees only HTTP status
        # (benchmarks.native) counts the server's own OK answers from.
        self.metrics_address = ""
        # ... and those of the primary and every worker: with --workers, each process counts
        # only the calls it answered itself.
        self.metrics_addresses: list[str] = []
        self.loaded_users = 0
        self.load_seconds = 0.0
        self.lease_until_ms = 0

    async def start(self, dataset: Dataset) -> None:
        self._data_dir = Path(tempfile.mkdtemp(prefix="bench-supernode-"))
        started = time.monotonic()
        lease_from_ms = generate.now_ms()
        self.loaded_users = await asyncio.to_thread(
            load_store, self._data_dir / "db", dataset, lease_from_ms
        )
        self.load_seconds = time.monotonic() - started
        self.lease_until_ms = lease_from_ms + LEASE_MS
        argv = server_argv(self._data_dir / "db", self.workers, self.tree)
        self._process = ServerProcess(argv, READY, cwd=self.tree)
        ready = json.loads((await self._process.wait_ready(_READY_TIMEOUT_S)).group(1))
        workers = ready.get("workers", [])
        self._worker_pids = [int(worker["pid"]) for worker in workers]
        self._target = ready["grpc"]
        self.metrics_address = ready["metrics"]
        self.metrics_addresses = [ready["metrics"], *(str(w["metrics"]) for w in workers)]
        self._token = await login_bench_client(self._target)

    async def stop(self) -> None:
        if self._process is not None:
            await self._process.stop()
            self._process = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def server_pids(self) -> list[int]:
        """The primary and its workers: CPU and memory are charged to all of them."""
        return [] if self._process is None else [self._process.pid, *self._worker_pids]

    def workloads(self) -> list[ClientSpec]:
        return [
            ClientSpec(self.name, workload_name(b), self._target, b, {"token": self._token})
            for b in BATCHES
        ]

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        """Lookup and LookupMany under h2load, judged by every process's call counts."""
        urls = [metrics_url(address) for address in self.metrics_addresses]

        def driver(batch: int) -> GrpcDriver:
            request = request_encoder(batch)(keys[batch])
            return GrpcDriver(self._target, method_path(batch), request, bearer(self._token), urls)

        return [NativeWorkload(self.name, workload_name(b), b, driver(b)) for b in BATCHES]
