"""``python -m benchmarks.cluster``: what a cluster's forwarding and replication cost, and
single-node lookups before and after the cluster work, in ONE run of interleaved rounds.

Five comparisons, each within itself like for like:

1. **before / after**: a single node (no etcd) of an older revision (``--before``, default
   the commit before the cluster work) against the current tree. The older revision is
   checked out in a git worktree in a temporary directory, its generated protobuf code is
   made by its own ``protos/build_hook.py`` (what its ``make gen`` runs), and its server runs
   with this interpreter (``python -m supernode.cli`` with the worktree as working directory
   and first on ``PYTHONPATH``). Both serve the same data set (same users, same sizes); each
   data directory is written by its own revision's loader (the suite's ``load_store``), since
   a store must be one that revision opens (RocksDB refuses to open a database whose column
   families it does not all name, and the current store added ``hints``). A start-up lookup
   through each checks it serves the users. Workload: ``Lookup`` of a uniformly drawn user.
2. **local / forwarded** (``cluster-rf1``): a 3-node cluster started with
   ``--cluster-replication-factor 1`` (one local etcd, ``--cluster-partitions 64``), whose
   users are created through the public API (CreateAccount claims each handle in etcd,
   Login, RegisterDevice of the data set's two signed devices, so a lookup returns the same
   bytes as in part 1). Replication factor 1 on purpose: with the default 3 on 3 nodes every
   node holds every partition and no lookup is ever forwarded. Every call goes to node 0:
   ``lookup-local`` draws handles node 0 owns (answered from its store), ``lookup-forwarded``
   handles another node owns (node 0 forwards the call: ``supernode.cluster.routing``).
   Their difference is the forwarding cost. ``lookup-many-10-local`` draws ten node-0
   handles, ``lookup-many-10-mixed`` ten of all handles: nearly every such call needs both
   other nodes, which node 0 asks concurrently (``ClusterPresence._gather``).
   **Ring-aware / proxied**: ``lookup-proxied`` draws from all handles and calls node 0,
   as a client that knows nothing of the ring does (about two in three calls forwarded);
   ``lookup-ring`` draws the same handles and sends each call straight to its owner, as the
   ring-aware SDK does (:mod:`benchmarks.systems.ring_routed`: the placement from
   ``GetPlacement``, the node from ``client_sdk.ring``; a check before the points makes
   sure no node forwards one).
3. **ONE / QUORUM** (``cluster-rf3``): a second 3-node cluster with its own etcd, replication
   factor 3, writes acknowledged by W = 2 (``supernode.cluster.replication``), loaded the same
   way. ``lookup-one`` and ``lookup-quorum`` call node 0 for the same handles (all users):
   ONE answers from node 0's replica, QUORUM reads node 0's versions and asks both peers,
   merging the first majority (``ClusterPresence._lookup_quorum``). ``lookup-ring`` sends
   the same lookups ring-aware: every node holds every partition, so each client keeps to
   one of the three replicas and the clients of a point share the three nodes: the cluster's
   throughput against ``after``'s single node (the comparison "3 nodes / 1 node"). On two
   cores the three nodes share the same CPU one node had, and one Python generator is the
   first to saturate, so that ratio says what a cluster costs per lookup here, not what
   three machines would serve.
4. **renewals, single node / cluster**: ``renew`` is RegisterDevice of an existing device
   with the next seq, signed by its user's key: what every live device sends once per lease.
   Against ``after`` (the single node) and ``cluster-rf3`` (calls spread round-robin over
   the three nodes; each coordinates: admission once, then the write to all three replicas,
   acknowledged after two). The records are the data set's (the ones loaded), re-signed by
   :class:`RenewalSigner` before each point starts (Ed25519 signing costs the Python
   generator ~50 µs, as much as a call: signing inside the point would halve what it
   drives), enough for the point (:func:`renewals_needed`), each device's seq one above its
   last, so the generator's cost is the call only. Verifying that signature costs the
   server ~60 µs per call, on the coordinator only.
5. **local path, cluster / single node**: ``after``'s Lookup against ``cluster-rf1``'s
   ``lookup-local`` and ``cluster-rf3``'s ``lookup-one``.

Every point is a closed loop of the suite's Python generator (:mod:`benchmarks.loadgen`)
at each concurrency (default 1 and 16); points are interleaved, round by round (every
workload of every system at each concurrency), so drift hits every system alike, and a
workload's rounds are merged: the histograms add, ops/s is the mean over rounds (with its
spread). All servers run for the whole run; the idle ones cost next to nothing (measured
and printed).

What the figures mean:

* ``p50/p99/p99.9 ms``: latency from send to answer, in ms; at one in flight (c=1) it is
  unloaded latency, the cleanest comparison: forwarded minus local p50 is the extra hop
  (node 0's client call to the owner and the owner's server side).
* ``ops/s``: completed calls per second (for ``renew``: acknowledged registrations). At c=1
  it is 1 / latency. At c=16 the two cores are full: a single node's Lookup (~3.6k ops/s at
  ~0.28 ms server CPU each) keeps its one single-threaded process at a core, and the Python
  generator, whose gRPC client costs about as much CPU per call, takes the other: one
  generator process saturates near 3.5-4k single lookups/s here, so a faster server would
  not show as more ops/s (FINDINGS.md: h2load drives the same server ~1.5x harder). The
  three nodes share what the generator leaves, so cluster ops/s at c=16 compare total CPU
  per call, not one node's capacity.
* ``server CPU ms/op``: CPU of the system's server processes per call (all three nodes for
  a cluster, etcd excluded: the hot path never calls it), measured from /proc and
  independent of the generator: the forwarding and replication cost in CPU.

Then the same comparisons with a native generator, h2load (:mod:`benchmarks.cluster_native`,
``--no-native`` skips them): ring-aware / proxied on RF 1, 3 nodes / 1 node, and the
forwarding hop unloaded, each judged by the servers' own counters.
Defaults fit in about 4 minutes on two cores; ``--quick`` (the smoke test) takes well under
a minute. The Markdown table is printed; ``--save`` also writes it and a JSON report into
``benchmarks/baselines/``. Every process, the worktree and the signed records are removed
at the end, on Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from benchmarks import generate
from benchmarks import histogram as hist
from benchmarks.cluster_native import (
    CaseResult,
    NativeRow,
    Node,
    loaded_cases,
    measure_case,
    native_comparisons,
    unloaded_cases,
)
from benchmarks.cluster_native import summarize as summarize_native
from benchmarks.dataset import LEASE_MS, Dataset
from benchmarks.figures import Figure
from benchmarks.loadgen import CLOSED, GeneratorPool, LoadSpec
from benchmarks.metrics_scrape import metric, scrape
from benchmarks.procstat import total_cpu_seconds
from benchmarks.report import format_ms, markdown_table
from benchmarks.run import (
    POINT_OVERHEAD_S,
    PointRunner,
    SetupError,
    describe_machine,
    run_event_loop,
    timestamp,
)
from benchmarks.systems.base import ClientSpec, LookupClient, System
from benchmarks.systems.grpc_raw import (
    CHANNEL_OPTIONS,
    CONNECT_TIMEOUT_S,
    EmptyResponse,
    RawUnaryClient,
    RequestEncoder,
    bearer,
)
from benchmarks.systems.process import ServerProcess
from benchmarks.systems.ring_routed import RING, RingRoutedClient
from benchmarks.systems.supernode import (
    PRESENCE,
    READY,
    SupernodeClient,
    SupernodeSystem,
    login_bench_client,
    method_path,
    server_argv,
)
from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, sign_device_record
from supernode.cluster.etcd import EtcdClient, EtcdConfig
from supernode.cluster.etcd_server import LocalEtcd
from supernode.cluster.keys import Keys
from supernode.cluster.placement import Placement

REPO = Path(__file__).resolve().parent.parent
BASELINES = REPO / "benchmarks" / "baselines"
DEFAULT_BEFORE = "9cbec51"  # the commit before the cluster work
NODES = 3
PARTITIONS = 64
BATCH = 10
RF1 = "cluster-rf1"
RF3 = "cluster-rf3"
RENEW = "renew"  # the renewal workload's name, on every system that offers it
# ClientSpec options (strings: a spec is sent to the generator processes).
HANDLES = "handles"  # the comma-separated handles a lookup workload draws from
QUORUM = "quorum"  # "1": lookups ask for CONSISTENCY_QUORUM
RENEWALS = "renewals"  # the file of a point's pre-signed RegisterDevice calls
TARGETS = "targets"  # comma-separated nodes renewals are spread over, round-robin
REGISTER_PATH = f"{PRESENCE}/RegisterDevice"
# Users whose two devices the renewal workloads renew: a device comes round again only
# after 2 * 256 other calls, so a renewal is never overtaken by its own device's previous
# one (16 in flight), and a replica never sees a device's seqs out of order.
RENEWAL_USERS = 256
# Renewals per second no point here reaches (the generator saturates near 4k calls/s):
# what a point is signed for when no earlier round measured its rate.
RENEWAL_RATE_CEILING = 5000.0
_CALL_DEADLINE_S = 10.0
_SETTLE_S = 60.0  # placement over every node; every user mirrored everywhere
_POLL_S = 0.2
_SLOW_STOP_S = 5.0  # a server slower than this to stop on SIGTERM is worth a warning
# A node drains for at most 10 s (server.shutdown_grace_seconds) and then closes; one that
# has not exited 5 s after that is stuck, and SIGKILL ends it (its data are thrown away).
_STOP_GRACE_S = 15.0


# ---------------------------------------------------------------------- clients


def listed_encoder(handles: Sequence[str], batch: int, quorum: bool = False) -> RequestEncoder:
    """Requests for the drawn indexes of ``handles`` (not of the data set's numbering)."""
    consistency = pb.CONSISTENCY_QUORUM if quorum else pb.CONSISTENCY_UNSPECIFIED
    if batch == 1:
        return lambda ix: pb.LookupRequest(
            handle=handles[ix[0]], consistency=consistency
        ).SerializeToString()
    return lambda ix: pb.LookupManyRequest(
        handles=[handles[i] for i in ix], consistency=consistency
    ).SerializeToString()


class ListedHandlesClient(RawUnaryClient):
    """The supernode client, drawing from the handles in ``spec.options["handles"]``."""

    def __init__(self, spec: ClientSpec) -> None:
        handles = spec.options[HANDLES].split(",")
        encode = listed_encoder(handles, spec.batch, spec.options.get(QUORUM) == "1")
        super().__init__(
            spec.target, method_path(spec.batch), encode, bearer(spec.options["token"])
        )


@dataclass(frozen=True)
class SignedRenewals:
    """One point's RegisterDevice calls, in the order they are to be sent.

    Call ``(node, token, request)`` goes to ``targets[node]`` of the workload with
    ``tokens[token]`` (the session of the record's user) and ``request``, a serialized
    ``RegisterDeviceRequest``."""

    tokens: list[str]
    calls: list[tuple[int, int, bytes]]


class RenewalsExhausted(Exception):
    """A point sent every record signed for it: counted as an error, so a point signed for
    too few calls shows in the table instead of measuring less."""


class RenewalClient:
    """Sends a point's pre-signed renewals in order, each to its node, one channel per node.

    A point of renewals has ONE client in ONE generator process (:func:`load_spec`): a
    second client would send the same records again, refused as replays.
    """

    def __init__(self, spec: ClientSpec) -> None:
        self._targets = spec.options[TARGETS].split(",")
        self._path = Path(spec.options[RENEWALS])
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[grpc.aio.UnaryUnaryMultiCallable] = []
        self._queue: Iterator[tuple[int, tuple[tuple[str, str], ...], bytes]] = iter(())

    async def connect(self) -> None:
        batch: SignedRenewals = pickle.loads(self._path.read_bytes())
        metadata = [bearer(token) for token in batch.tokens]
        self._queue = iter([(node, metadata[t], request) for node, t, request in batch.calls])
        for target in self._targets:
            channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await channel.channel_ready()
            self._calls.append(channel.unary_unary(REGISTER_PATH))

    async def lookup(self, indexes: list[int]) -> None:
        """The next renewal (``indexes``, the drawn keys, do not apply: order matters)."""
        try:
            node, metadata, request = next(self._queue)
        except StopIteration:
            raise RenewalsExhausted(str(self._path)) from None
        if not await self._calls[node](request, metadata=metadata):
            raise EmptyResponse(REGISTER_PATH)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels), return_exceptions=True)
        self._channels.clear()


def make_bench_client(spec: ClientSpec) -> LookupClient:
    """The generator processes' client factory (module level: it is sent to them)."""
    if RENEWALS in spec.options:
        return RenewalClient(spec)
    if spec.options.get(RING) == "1":
        return RingRoutedClient(spec, spec.options[HANDLES].split(","))
    return ListedHandlesClient(spec) if HANDLES in spec.options else SupernodeClient(spec)


def key_space(spec: ClientSpec, users: int) -> int:
    """How many keys the generator draws from: the listed handles, else every user."""
    return len(spec.options[HANDLES].split(",")) if HANDLES in spec.options else users


# ---------------------------------------------------------------------- renewals


def renewal_spec(system: str, targets: Sequence[str]) -> ClientSpec:
    """The renewal workload of ``system``; each point adds its records (``prepare``)."""
    return ClientSpec(system, RENEW, targets[0], 1, {TARGETS: ",".join(targets)})


def renewals_needed(seconds: float, measured_rate: float | None) -> int:
    """Records to sign for a point that sends for ``seconds`` (warm-up included): for twice
    the rate an earlier round of it measured, else for :data:`RENEWAL_RATE_CEILING`."""
    rate = RENEWAL_RATE_CEILING if measured_rate is None else max(2 * measured_rate, 100.0)
    return math.ceil(rate * seconds) + 100


async def login_users(target: str, dataset: Dataset, count: int) -> list[str]:
    """Session tokens of the data set's first ``count`` users, logged in at ``target``
    (a cluster's nodes share the token secret, so they hold on every node)."""
    tokens = []
    async with DirectoryConnection(target) as connection:
        for index in range(count):
            identity = dataset.identities[index % len(dataset.identities)]
            await connection.login(identity, Dataset.handle(index), deadline=_CALL_DEADLINE_S)
            assert connection.token is not None
            tokens.append(connection.token)
    return tokens


@dataclass
class _Device:
    identity: Identity
    record: pb.DeviceRecord  # as loaded, seq 1; renewals copy it with the next seq
    token: int  # index into RenewalSigner.tokens
    seq: int = 1  # the last seq signed


class RenewalSigner:
    """The renewals of one system: the loaded device records of the first users, re-signed
    with the next seq and a fresh issue time, the calls spread over ``targets``.

    Devices come round in a fixed order and targets round-robin by call, across points:
    seqs only go up (the server refuses a seq not above the stored one)."""

    def __init__(
        self, dataset: Dataset, tokens: Sequence[str], targets: Sequence[str], directory: Path
    ) -> None:
        self.tokens = list(tokens)
        self.targets = list(targets)
        self._directory = directory
        self._devices: list[_Device] = []
        for index in range(len(tokens)):
            identity = dataset.identities[index % len(dataset.identities)]
            for _, _, device in dataset.user(index, generate.now_ms()).devices:
                record = pb.DeviceRecord.FromString(pb.Device.FromString(device).signed.record)
                self._devices.append(_Device(identity, record, index))
        self._next_device = 0
        self._calls = 0
        self._points = 0
        self._path: Path | None = None
        self.signed = 0  # records signed so far, checks included

    def sign(self, count: int, now_ms: int, *, visible: bool = False) -> SignedRenewals:
        """``count`` renewals signed now; ``visible``: each also moves the device's first
        endpoint to a port of its own seq, a change watchers are told of, where a plain
        renewal (the same record, a higher seq) is no watch event."""
        calls = []
        for _ in range(count):
            device = self._devices[self._next_device]
            self._next_device = (self._next_device + 1) % len(self._devices)
            device.seq += 1
            record = pb.DeviceRecord()
            record.CopyFrom(device.record)
            record.seq = device.seq
            record.issued_at_ms = now_ms
            if visible:
                del record.endpoints[:]
                record.endpoints.append(
                    pb.Endpoint(
                        address="198.51.100.9",
                        port=1024 + device.seq % 60_000,
                        protocol=pb.TRANSPORT_PROTOCOL_UDP,
                        type=pb.CANDIDATE_TYPE_HOST,
                    )
                )
            signed = sign_device_record(device.identity, record)
            request = pb.RegisterDeviceRequest(signed=signed).SerializeToString()
            calls.append((self._calls % len(self.targets), device.token, request))
            self._calls += 1
        self.signed += count
        return SignedRenewals(self.tokens, calls)

    def prepare(self, spec: LoadSpec, count: int) -> LoadSpec:
        """``spec`` with ``count`` records signed now and written for its client (the
        previous point's file, sent by now, is removed)."""
        if self._path is not None:
            self._path.unlink()
        self._points += 1
        path = self._path = self._directory / f"{spec.client.system}-{self._points}.pickle"
        path.write_bytes(pickle.dumps(self.sign(count, generate.now_ms())))
        options = {**spec.client.options, RENEWALS: str(path)}
        return dataclasses.replace(spec, client=dataclasses.replace(spec.client, options=options))

    async def check(self, system: str) -> None:
        """One renewal through every target, with the API's client: each acknowledges."""
        batch = self.sign(len(self.targets), generate.now_ms())
        for node, token, request in batch.calls:
            async with DirectoryConnection(self.targets[node]) as connection:
                connection.token = batch.tokens[token]
                signed = pb.RegisterDeviceRequest.FromString(request).signed
                try:
                    answer = await connection.register_device(signed, deadline=_CALL_DEADLINE_S)
                except grpc.aio.AioRpcError as exc:
                    raise SetupError(
                        f"{system}: a renewal through {self.targets[node]} failed: "
                        f"{exc.code().name} {exc.details()}"
                    ) from exc
                if answer.expires_at_ms <= generate.now_ms():
                    raise SetupError(f"{system}: a renewal through {self.targets[node]} expired")


# ---------------------------------------------------------------------- the older revision


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def describe_tree() -> str:
    """The current tree's commit, marked when files differ from it."""
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if changed else "")


def _tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A worktree of ``rev`` outside the repository, with its generated code; removed after.

    Its generated protobuf modules are untracked files, hence ``remove --force``.
    """
    parent = Path(tempfile.mkdtemp(prefix="sn-before-"))
    tree = parent / "tree"
    try:
        _git("worktree", "add", "--detach", str(tree), rev)
        hook = tree / "protos" / "build_hook.py"
        if not hook.exists():
            raise SetupError(f"{rev} has no protos/build_hook.py: generate its code by hand")
        done = subprocess.run(
            [sys.executable, str(hook)], cwd=tree, env=_tree_env(tree), capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SetupError(f"generating {rev}'s protobuf code failed:\n{done.stderr[-2000:]}")
        yield tree
    finally:
        if tree.exists():
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )
        shutil.rmtree(parent, ignore_errors=True)


# Run in the older tree: its own data set code, loader and store.
_OLDER_LOADER = """
import sys
from pathlib import Path
from benchmarks.dataset import Dataset
from benchmarks.systems.supernode import load_store
load_store(Path(sys.argv[1]), Dataset(int(sys.argv[2]), int(sys.argv[3])), int(sys.argv[4]))
"""


def load_older_store(tree: Path, data_dir: Path, dataset: Dataset, lease_from_ms: int) -> None:
    """Write ``dataset`` into a new store at ``data_dir`` with ``tree``'s loader and store."""
    argv = [sys.executable, "-c", _OLDER_LOADER, str(data_dir), str(dataset.users),
            str(dataset.seed), str(lease_from_ms)]  # fmt: skip
    done = subprocess.run(argv, cwd=tree, env=_tree_env(tree), capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"the older revision's loader failed:\n{done.stderr[-2000:]}")


class OlderSupernodeSystem(SupernodeSystem):
    """The older revision's single node, over a store that revision's own loader wrote."""

    def __init__(self, tree: Path) -> None:
        super().__init__(name="before", tree=tree)
        self.older_tree = tree

    async def start(self, dataset: Dataset) -> None:
        self._data_dir = Path(tempfile.mkdtemp(prefix="bench-supernode-"))
        started = time.monotonic()
        lease_from_ms = generate.now_ms()
        data_dir = self._data_dir / "db"
        await asyncio.to_thread(load_older_store, self.older_tree, data_dir, dataset, lease_from_ms)
        self.loaded_users = dataset.users
        self.load_seconds = time.monotonic() - started
        self.lease_until_ms = lease_from_ms + LEASE_MS
        argv = server_argv(data_dir, 1, self.older_tree)
        self._process = ServerProcess(argv, READY, cwd=self.older_tree)
        ready = json.loads((await self._process.wait_ready(60.0)).group(1))
        self._target = ready["grpc"]
        self._token = await login_bench_client(self._target)


# ---------------------------------------------------------------------- the clusters


async def lookup_devices(target: str, token: str, handle: str, quorum: bool = False) -> int:
    """One Lookup through the public API: the number of devices it returns."""
    async with DirectoryConnection(target) as connection:
        connection.token = token
        answer = await connection.lookup(handle, deadline=_CALL_DEADLINE_S, quorum=quorum)
        return len(answer.devices)


async def register_users(targets: Sequence[str], dataset: Dataset, concurrency: int) -> None:
    """Every user of ``dataset`` through the public API, ``concurrency`` at a time, the
    callers spread over ``targets``: CreateAccount, Login, RegisterDevice per device (the
    data set's records, signed now so their issue time is fresh)."""
    indexes = iter(range(dataset.users))  # shared: each worker takes the next user

    async def worker(target: str) -> None:
        async with DirectoryConnection(target) as connection:
            for index in indexes:
                user = dataset.user(index, generate.now_ms())
                identity = dataset.identities[index % len(dataset.identities)]
                name = pb.Account.FromString(user.account).display_name
                await connection.create_account(
                    identity, user.handle, name, deadline=_CALL_DEADLINE_S
                )
                await connection.login(identity, user.handle, deadline=_CALL_DEADLINE_S)
                for _, _, device in user.devices:
                    signed = pb.Device.FromString(device).signed
                    await connection.register_device(signed, deadline=_CALL_DEADLINE_S)

    await asyncio.gather(*(worker(targets[w % len(targets)]) for w in range(concurrency)))


async def settle(
    what: str, check: Callable[[], Awaitable[bool]], within_s: float = _SETTLE_S
) -> None:
    """Poll ``check`` until it returns true; SetupError after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise SetupError(f"cluster: {what} not reached within {within_s:g} s")
        await asyncio.sleep(_POLL_S)


class ClusterSystem:
    """A local etcd and ``NODES`` nodes with ``replication_factor`` replicas per partition
    (writes acknowledged by a majority of them); lookups call node 0 (module docstring).

    Replication factor 1 offers the local/forwarded workloads; ``NODES`` (every node holds
    every partition) the ONE/QUORUM lookups and the renewals."""

    def __init__(
        self,
        name: str,
        replication_factor: int,
        load_concurrency: int = 16,
        node_args: Sequence[str] = (),
    ) -> None:
        if replication_factor not in (1, NODES):
            raise ValueError(f"replication factor {replication_factor}: 1 or {NODES} here")
        self.name = name
        self.node_args = list(node_args)  # more serve options for every node
        self.replication_factor = replication_factor
        self.write_quorum = replication_factor // 2 + 1
        self.load_concurrency = load_concurrency
        self.load_seconds = 0.0
        self._root: Path | None = None
        self._etcd: LocalEtcd | None = None
        self._nodes: list[ServerProcess] = []
        self.targets: list[str] = []
        self._metrics: list[str] = []
        self.token = ""
        self._local: list[str] = []
        self._remote: list[str] = []
        self._all: list[str] = []
        self.epoch = 0
        self._placed: Placement | None = None  # as the users were loaded

    async def start(self, dataset: Dataset) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        self._etcd = LocalEtcd(1)
        await self._etcd.start()
        starting = [self._launch() for _ in range(NODES)]
        for node in starting:
            await self._serving(node)
        placement = await self.settled_placement()
        self.token = await login_bench_client(self.targets[0])
        began = time.monotonic()
        await register_users(self.targets, dataset, self.load_concurrency)
        copies = len(dataset.user(0, 0).devices) * dataset.users * self.replication_factor
        await settle("every user on every node", lambda: self._loaded(dataset.users, copies))
        self.load_seconds = time.monotonic() - began
        if (await self.placement()) != placement:
            raise SetupError(f"{self.name}: placement changed while users were loaded")
        self.epoch = placement.epoch
        self._placed = placement
        self._all = [Dataset.handle(i) for i in range(dataset.users)]
        node0 = self.targets[0]
        self._local = [h for h in self._all if node0 in placement.replicas_of_handle(h)]
        self._remote = [h for h in self._all if node0 not in placement.replicas_of_handle(h)]
        if self.replication_factor == 1 and not (self._local and self._remote):
            raise SetupError(f"{self.name}: node 0 owns all or none of the users; use more")
        if self.replication_factor > 1 and self._remote:
            raise SetupError(f"{self.name}: node 0 holds no replica of {self._remote[0]}")
        await self._check_routing()
        await self.check_ring_routing()

    def _launch(self) -> ServerProcess:
        """Start the next node (its ready line is awaited by :meth:`_serving`)."""
        assert self._root is not None and self._etcd is not None, "start() first"
        endpoints = ",".join(self._etcd.client_endpoints)
        argv = server_argv(self._root / f"node{len(self._nodes)}", 1)
        argv += ["--cluster-etcd-endpoints", endpoints, "--cluster-partitions", str(PARTITIONS),
                 "--cluster-replication-factor", str(self.replication_factor),
                 "--cluster-write-quorum", str(self.write_quorum), *self.node_args]  # fmt: skip
        node = ServerProcess(argv, READY)
        self._nodes.append(node)
        return node

    async def _serving(self, node: ServerProcess) -> str:
        ready = json.loads((await node.wait_ready(60.0)).group(1))
        self.targets.append(ready["grpc"])
        self._metrics.append(f"http://{ready['metrics']}/metrics")
        return str(ready["grpc"])

    async def add_node(self) -> str:
        """Start one more node, which joins the cluster (the controller moves partitions
        to it while the others serve); its address once it listens."""
        return await self._serving(self._launch())

    async def placement(self) -> Placement | None:
        assert self._etcd is not None
        async with EtcdClient(EtcdConfig(tuple(self._etcd.client_endpoints))) as etcd:
            entry = await etcd.get(Keys("/supernode").placement)
        return None if entry is None else Placement.from_bytes(entry.value)

    async def node_metric(self, index: int, name: str, **labels: str) -> float:
        return metric(await asyncio.to_thread(scrape, self._metrics[index]), name, **labels)

    async def settled_placement(self, within_s: float = _SETTLE_S) -> Placement:
        """Placement over every node, and every node routing by it."""
        found: list[Placement] = []

        async def placed() -> bool:
            placement = await self.placement()
            if placement is None or placement.nodes() != set(self.targets):
                return False
            if not placement.settled:
                return False
            epochs = [
                await self.node_metric(i, "supernode_cluster_placement_epoch")
                for i in range(len(self.targets))
            ]
            found[:] = [placement]
            return all(epoch == placement.epoch for epoch in epochs)

        await settle("placement over every node, nothing moving", placed, within_s)
        return found[0]

    async def _loaded(self, users: int, copies: int) -> bool:
        """Every account in every node's mirror (the bench client's too), and ``copies``
        device records stored over the nodes (each on every replica of its partition)."""
        accounts = [await self.node_metric(i, "supernode_accounts") for i in range(NODES)]
        online = [await self.node_metric(i, "supernode_devices_online") for i in range(NODES)]
        return all(a == users + 1 for a in accounts) and sum(online) == copies

    async def _forwarded(self, method: str) -> float:
        return await self.node_metric(0, "supernode_cluster_forwarded_calls", method=method)

    async def _check_routing(self) -> None:
        """Replication factor 1: a local handle's lookup is not forwarded and a remote
        one's is, once. More: a ONE lookup is answered at node 0, a QUORUM one asks a peer."""
        before = {m: await self._forwarded(m) for m in ("Lookup", "Versions")}
        first = self._local[0]
        if self.replication_factor == 1:
            asked = [(first, False), (self._remote[0], False)]
        else:
            asked = [(first, False), (first, True)]
        for handle, quorum in asked:
            if await lookup_devices(self.targets[0], self.token, handle, quorum) == 0:
                raise SetupError(f"{self.name}: {handle} has no devices after loading")
        lookups = await self._forwarded("Lookup") - before["Lookup"]
        versions = await self._forwarded("Versions") - before["Versions"]
        expected = 1 if self.replication_factor == 1 else 0
        if lookups != expected or (self.replication_factor > 1 and versions < 1):
            raise SetupError(
                f"{self.name}: lookups {asked} forwarded {lookups:g} Lookup and {versions:g} "
                f"Versions calls; expected {expected} Lookup"
                + ("" if self.replication_factor == 1 else " and at least one Versions")
            )

    def native_nodes(self) -> list[Node]:
        """Every node as :mod:`benchmarks.cluster_native` calls it."""
        return [Node(t, u) for t, u in zip(self.targets, self._metrics, strict=True)]

    def owned_handles(self) -> list[str]:
        """A loaded handle owned by each node, in node order."""
        assert self._placed is not None, "start() first"
        owned = []
        for target in self.targets:
            mine = [h for h in self._all if self._placed.replicas_of_handle(h)[0] == target]
            if not mine:
                raise SetupError(f"{self.name}: {target} owns none of the users; use more")
            owned.append(mine[0])
        return owned

    async def check_ring_routing(self, lookups: int = 32) -> None:
        """Lookups routed by the ring-aware client (:mod:`benchmarks.systems.ring_routed`)
        reach a replica of their handle: no node forwards one, and each one succeeds."""
        spec = ClientSpec(self.name, "lookup-ring", self.targets[0], 1, {"token": self.token})
        client = RingRoutedClient(spec, self._all)
        await client.connect()
        texts = await asyncio.gather(*(asyncio.to_thread(scrape, u) for u in self._metrics))
        try:
            for index in range(min(lookups, len(self._all))):
                await client.lookup([index])
        finally:
            await client.close()
        after = await asyncio.gather(*(asyncio.to_thread(scrape, u) for u in self._metrics))
        forwarded = sum(
            metric(b, "supernode_cluster_forwarded_calls", method="Lookup")
            - metric(a, "supernode_cluster_forwarded_calls", method="Lookup")
            for a, b in zip(texts, after, strict=True)
        )
        if forwarded:
            raise SetupError(f"{self.name}: ring-routed lookups were forwarded {forwarded:g} times")

    async def forwarded_calls(self) -> dict[str, float]:
        """Node 0's calls to the other nodes so far, by internal method."""
        text = await asyncio.to_thread(scrape, self._metrics[0])
        return {
            m: metric(text, "supernode_cluster_forwarded_calls", method=m)
            for m in ("Lookup", "LookupMany", "Versions", "Apply")
        }

    async def replication_counters(self) -> dict[str, float]:
        """Hints stored (a replica missed a write) and read repairs, over every node."""
        texts = await asyncio.gather(*(asyncio.to_thread(scrape, url) for url in self._metrics))
        return {
            name: sum(metric(text, f"supernode_cluster_{name}") for text in texts)
            for name in ("hints_stored", "read_repairs")
        }

    async def stop(self) -> None:
        async def stop_node(index: int, node: ServerProcess) -> None:
            began = time.monotonic()
            code = await node.stop(_STOP_GRACE_S)
            if (took := time.monotonic() - began) > _SLOW_STOP_S:
                print(
                    f"warning: {self.name} node {index} took {took:.1f} s to stop on SIGTERM "
                    f"(exit {code}); its last lines:\n{node.tail()}",
                    file=sys.stderr,
                )

        # etcd still up for them
        await asyncio.gather(*(stop_node(i, node) for i, node in enumerate(self._nodes)))
        self._nodes.clear()
        if self._etcd is not None:
            await self._etcd.stop()
            self._etcd = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def server_pids(self) -> list[int]:
        return [node.pid for node in self._nodes]

    def workloads(self) -> list[ClientSpec]:
        node0, token = self.targets[0], self.token

        def spec(
            workload: str, batch: int, handles: list[str], quorum: bool = False, ring: bool = False
        ) -> ClientSpec:
            options = {"token": token, HANDLES: ",".join(handles), QUORUM: "1" if quorum else "",
                       RING: "1" if ring else ""}  # fmt: skip
            return ClientSpec(self.name, workload, node0, batch, options)

        if self.replication_factor > 1:
            return [
                spec("lookup-one", 1, self._all),
                spec("lookup-ring", 1, self._all, ring=True),
                spec("lookup-quorum", 1, self._all, quorum=True),
                renewal_spec(self.name, self.targets),
            ]
        return [
            spec("lookup-local", 1, self._local),
            spec("lookup-forwarded", 1, self._remote),
            spec("lookup-proxied", 1, self._all),
            spec("lookup-ring", 1, self._all, ring=True),
            spec(f"lookup-many-{BATCH}-local", BATCH, self._local),
            spec(f"lookup-many-{BATCH}-mixed", BATCH, self._all),
        ]


# ---------------------------------------------------------------------- plan and summary


@dataclass(frozen=True)
class Settings:
    users: int
    seed: int
    rounds: int
    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    connections: int
    before: str
    load_concurrency: int
    quick: bool
    save_dir: Path | None
    idle_s: float = 2.0  # server CPU at rest is sampled this long before the points
    native: bool = True  # h2load points too


@dataclass(frozen=True)
class Point:
    round: int
    client: ClientSpec
    concurrency: int


def plan(workloads: Sequence[ClientSpec], concurrencies: Sequence[int], rounds: int) -> list[Point]:
    """Round by round, at each concurrency, every workload in the order given."""
    return [
        Point(r, client, c)
        for r in range(1, rounds + 1)
        for c in concurrencies
        for client in workloads
    ]


def load_spec(settings: Settings, point: Point) -> LoadSpec:
    """The point's load. Renewals run on one client (one channel per node): each record
    may be sent once, and one client takes them in order."""
    renewals = point.client.workload == RENEW
    return LoadSpec(
        point.client,
        CLOSED,
        settings.duration_s,
        warmup_s=settings.warmup_s,
        concurrency=point.concurrency,
        connections=1 if renewals else min(settings.connections, point.concurrency),
        processes=1,
        users=key_space(point.client, settings.users),
        seed=settings.seed + point.round,
    )


@dataclass(frozen=True)
class Row:
    """One workload at one concurrency, its rounds merged."""

    system: str
    workload: str
    concurrency: int
    rounds: int
    ops_per_s: float  # mean over rounds
    ops_min: float
    ops_max: float
    p50_us: int
    p99_us: int
    p999_us: int
    cpu_ms_per_op: float | None  # mean over rounds
    errors: int
    failures: int


def summarize(figures: Sequence[Figure]) -> list[Row]:
    """One row per (system, workload, concurrency), in first-measured order."""
    groups: dict[tuple[str, str, int], list[Figure]] = {}
    for figure in figures:
        groups.setdefault((figure.system, figure.workload, figure.concurrency), []).append(figure)
    rows = []
    for (system, workload, concurrency), group in groups.items():
        ok = [f for f in group if f.failure is None]
        rates = [f.achieved_rate for f in ok] or [0.0]
        cpu = [f.server_cpu_s_per_1000_ops for f in ok if f.server_cpu_s_per_1000_ops is not None]
        merged = hist.summarize(hist.merge(f.histogram for f in ok))
        rows.append(
            Row(system, workload, concurrency, len(ok), sum(rates) / len(rates), min(rates),
                max(rates), merged.p50, merged.p99, merged.p999,
                sum(cpu) / len(cpu) if cpu else None, sum(f.errors for f in ok),
                len(group) - len(ok))
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class Comparison:
    """``other`` against ``base`` at one concurrency."""

    label: str
    base: Row
    other: Row

    @property
    def p50_delta_us(self) -> int:
        return self.other.p50_us - self.base.p50_us

    def ratio(self, field: str) -> float | None:
        base, other = getattr(self.base, field), getattr(self.other, field)
        return other / base if base and other is not None else None


# (label, base (system, workload), other (system, workload))
COMPARISONS = (
    ("single node: after / before", ("before", "lookup"), ("after", "lookup")),
    ("RF1: forwarded / local", (RF1, "lookup-local"), (RF1, "lookup-forwarded")),
    (
        f"RF1 LookupMany-{BATCH}: mixed / local",
        (RF1, f"lookup-many-{BATCH}-local"),
        (RF1, f"lookup-many-{BATCH}-mixed"),
    ),
    ("RF1: ring-aware / proxied", (RF1, "lookup-proxied"), (RF1, "lookup-ring")),
    ("RF3: ring-aware over 3 nodes / node 0", (RF3, "lookup-one"), (RF3, "lookup-ring")),
    ("3 nodes (RF3 ring-aware) / 1 node", ("after", "lookup"), (RF3, "lookup-ring")),
    ("local path: RF1 / single node", ("after", "lookup"), (RF1, "lookup-local")),
    ("local path: RF3 ONE / RF1", (RF1, "lookup-local"), (RF3, "lookup-one")),
    ("RF3 lookup: QUORUM / ONE", (RF3, "lookup-one"), (RF3, "lookup-quorum")),
    ("renewals: RF3 W2 / single node", ("after", RENEW), (RF3, RENEW)),
)


def comparisons(rows: Sequence[Row]) -> list[Comparison]:
    by_key = {(r.system, r.workload, r.concurrency): r for r in rows}
    found = []
    for label, base, other in COMPARISONS:
        for c in sorted({r.concurrency for r in rows}):
            a, b = by_key.get((*base, c)), by_key.get((*other, c))
            if a is not None and b is not None and a.rounds and b.rounds:
                found.append(Comparison(label, a, b))
    return found


# ---------------------------------------------------------------------- report


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def markdown(report: dict[str, Any], rows: Sequence[Row]) -> str:
    run = report["run"]
    header = ["system", "workload", "in flight", "ops/s", "ops/s min-max", "p50 ms", "p99 ms",
              "p99.9 ms", "server CPU ms/op", "errors"]  # fmt: skip
    table = [
        [r.system, r.workload, str(r.concurrency), f"{r.ops_per_s:,.0f}",
         f"{r.ops_min:,.0f}-{r.ops_max:,.0f}", format_ms(r.p50_us), format_ms(r.p99_us),
         format_ms(r.p999_us), "" if r.cpu_ms_per_op is None else f"{r.cpu_ms_per_op:.3f}",
         str(r.errors) + (f" ({r.failures} rounds FAILED)" if r.failures else "")]
        for r in rows
    ]  # fmt: skip
    diff_header = ["comparison", "in flight", "p50 ms", "p50 delta ms", "p99", "ops/s",
                   "server CPU/op"]  # fmt: skip
    diffs = [
        [c.label, str(c.base.concurrency),
         f"{format_ms(c.base.p50_us)} -> {format_ms(c.other.p50_us)}",
         f"{c.p50_delta_us / 1000:+.3f}", _times(c.ratio("p99_us")),
         _times(c.ratio("ops_per_s")), _times(c.ratio("cpu_ms_per_op"))]
        for c in comparisons(rows)
    ]  # fmt: skip
    clusters = run["clusters"]
    lines = [
        f"# Cluster forwarding, replication and single-node lookups, {run['started_at']}",
        "",
        f"{run['users']:,} users (seed {run['seed']}), {run['rounds']} interleaved round(s), "
        f"{run['duration_s']:g} s per point after {run['warmup_s']:g} s warm-up, closed loop, "
        f"one Python generator process, up to {run['connections']} connections "
        f"(renewals: one per node){' (quick mode)' if run['quick'] else ''}. "
        f"before = {run['before']}, after = {run['after']}. Clusters: {NODES} nodes, "
        f"{PARTITIONS} partitions, one etcd each; "
        + "; ".join(
            f"{name}: RF {c['replication_factor']}, W {c['write_quorum']}, epoch {c['epoch']}, "
            f"users loaded through the API in {c['users_loaded_s']:.1f} s"
            for name, c in clusters.items()
        )
        + ". Lookups call node 0; renewals are spread over every node of a system, "
        f"the {run['renewal_users']:,} first users' devices renewed in turn.",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in run["machine"].items()) + ".",
        "",
        *markdown_table(header, table),
        "",
        *markdown_table(diff_header, diffs),
        "",
    ]
    lines += [f"- {note}" for note in run["notes"]]
    if report["native"]:
        lines += ["", *native_markdown(report)]
    return "\n".join(lines) + "\n"


def native_markdown(report: dict[str, Any]) -> list[str]:
    """The h2load table and its ratios."""
    header = ["case (h2load)", "system", "h2loads x clients x streams", "req/s", "p50 ms",
              "p99 ms", "p99.9 ms", "server CPU ms/op", "failed rounds"]  # fmt: skip
    table = [
        [r["label"], r["system"], f"{r['h2loads']} x {r['clients']} x {r['streams']}",
         f"{r['req_per_s']:,.0f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
         f"{r['p999_ms']:.3f}",
         "" if r["cpu_ms_per_op"] is None else f"{r['cpu_ms_per_op']:.3f}",
         "; ".join(r["failures"]) or "0"]
        for r in report["native"]
    ]  # fmt: skip
    ratios = [
        [c["label"], _times(c["ops_ratio"]), _times(c["p50_ratio"]), _times(c["p99_ratio"]),
         _times(c["cpu_ratio"])]
        for c in report["native_comparisons"]
    ]  # fmt: skip
    return [
        "## Native generator (h2load)",
        "",
        *markdown_table(header, table),
        "",
        *markdown_table(["comparison", "req/s", "p50", "p99", "server CPU/op"], ratios),
        "",
        "- Each h2load looks up one handle (a fixed body); a case's h2loads run at once. A "
        "case counts only if the nodes it called answered OK at least as many Lookups as "
        "h2load completed, with no error (h2load sees only HTTP status).",
        "- The three nodes of a cluster share this machine's two cores with h2load: the "
        "3 nodes / 1 node ratio is what the cluster's extra work costs here, not what three "
        "machines would serve.",
    ]


def save(report: dict[str, Any], text: str, directory: Path) -> Path:
    """``<date>-cluster-forwarding.json`` and ``.md`` in ``directory`` (never overwritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{report['run']['started_at'][:10]}-cluster-forwarding"
    suffix = 1
    while (directory / f"{stem}.json").exists():
        suffix += 1
        stem = f"{report['run']['started_at'][:10]}-cluster-forwarding-{suffix}"
    (directory / f"{stem}.md").write_text(text)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------- the run


async def idle_cpu_ms_per_s(systems: Sequence[System], seconds: float) -> dict[str, float]:
    """Each system's server CPU while nothing calls it (leases, sweeps, etcd watches)."""
    before = [total_cpu_seconds(s.server_pids()) for s in systems]
    await asyncio.sleep(seconds)
    after = [total_cpu_seconds(s.server_pids()) for s in systems]
    pairs = zip(systems, before, after, strict=True)
    return {system.name: 1000 * (b - a) / seconds for system, a, b in pairs}


async def stop_all(systems: Sequence[System]) -> None:
    """Stop every system at once (a stuck server costs its grace once, not once each); a
    failure or a slow stop is reported, and the others are stopped all the same."""

    async def stop(system: System) -> None:
        began = time.monotonic()
        try:
            await system.stop()
        except Exception as exc:
            print(f"warning: stopping {system.name} failed: {exc}", file=sys.stderr)
        if (took := time.monotonic() - began) > _SLOW_STOP_S:
            print(f"warning: stopping {system.name} took {took:.1f} s", file=sys.stderr)

    await asyncio.gather(*(stop(system) for system in systems))


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: value - before.get(name, 0.0) for name, value in after.items()}


def measured_rate(figures: Sequence[Figure], client: ClientSpec, concurrency: int) -> float | None:
    """The highest rate an earlier round of this workload reached at this concurrency."""
    rates = [
        f.achieved_rate
        for f in figures
        if (f.system, f.workload, f.concurrency) == (client.system, client.workload, concurrency)
        and f.failure is None
    ]
    return max(rates) if rates else None


def renewal_notes(rf3: ClusterSystem, counters: dict[str, float]) -> list[str]:
    return [
        f"renew: RegisterDevice of an existing device, next seq, signed before the point "
        f"by its user's key; each call verifies one Ed25519 signature (~60 us of server CPU; "
        f"in {rf3.name} on the coordinator only) and, in {rf3.name}, writes all "
        f"{rf3.replication_factor} replicas and is acknowledged after {rf3.write_quorum}; "
        f"during the points its nodes stored {counters['hints_stored']:,.0f} hints (replicas that "
        f"missed a write) and sent {counters['read_repairs']:,.0f} read repairs.",
        "lookup-quorum: node 0 reads its own versions and asks both peers (Versions), "
        "answering with the first majority; lookup-one: node 0's replica alone.",
    ]


async def native_points(
    settings: Settings, single: SupernodeSystem, rf1: ClusterSystem, rf3: ClusterSystem
) -> list[NativeRow]:
    """The h2load cases (:mod:`benchmarks.cluster_native`), round by round, interleaved."""
    lookup = single.workloads()[0]
    alone = (Node(lookup.target, f"http://{single.metrics_address}/metrics"),
             lookup.options["token"], tuple(single.server_pids()))  # fmt: skip
    one_per_node = (rf1.native_nodes(), rf1.token, tuple(rf1.server_pids()), rf1.owned_handles())
    handles = [Dataset.handle(i) for i in range(3)]
    cases = [
        *loaded_cases(alone, (rf3.native_nodes(), rf3.token, tuple(rf3.server_pids())),
                      one_per_node, handles),
        *unloaded_cases(alone, one_per_node, handles[0]),
    ]  # fmt: skip
    results = [CaseResult(case) for case in cases]
    print(f"{len(cases) * settings.rounds} native points (h2load) ...", flush=True)
    for _ in range(settings.rounds):
        for result in results:
            point, cpu = await measure_case(result.case, settings.duration_s, settings.warmup_s)
            result.points.append(point)
            result.cpu_ms_per_op.append(cpu)
            verdict = point.failure or f"{point.req_per_s:,.0f} req/s"
            print(f"  {result.case.label}: {verdict}", flush=True)
    return summarize_native(results)


async def measure(settings: Settings, tree: Path, before: str) -> tuple[dict[str, Any], list[Row]]:
    started_at = timestamp()
    machine = describe_machine()
    dataset = Dataset(settings.users, settings.seed)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    old = OlderSupernodeSystem(tree)
    new = SupernodeSystem(name="after")
    rf1 = ClusterSystem(RF1, 1, settings.load_concurrency)
    rf3 = ClusterSystem(RF3, NODES, settings.load_concurrency)
    systems: list[System] = [old, new, rf1, rf3]
    running: list[System] = []
    records = Path(tempfile.mkdtemp(prefix="bench-renewals-"))
    try:
        for system in systems:
            print(f"starting {system.name} with {settings.users:,} users ...", flush=True)
            running.append(system)
            await system.start(dataset)
        for system in (old, new):  # each serves the store its revision wrote
            single = system.workloads()[0]
            handle = Dataset.handle(settings.users - 1)
            if await lookup_devices(single.target, single.options["token"], handle) == 0:
                raise SetupError(f"{system.name}: {handle} has no devices; unreadable store?")
        renewing = min(RENEWAL_USERS, settings.users)
        after_target = new.workloads()[0].target
        signers = {
            new.name: RenewalSigner(
                dataset, await login_users(after_target, dataset, renewing), [after_target],
                records,
            ),
            rf3.name: RenewalSigner(
                dataset, await login_users(rf3.targets[0], dataset, renewing), rf3.targets,
                records,
            ),
        }  # fmt: skip
        for name, signer in signers.items():
            await signer.check(name)
        idle = await idle_cpu_ms_per_s(systems, settings.idle_s)
        workloads = [
            old.workloads()[0],
            new.workloads()[0],
            renewal_spec(new.name, [after_target]),
            *rf1.workloads(),
            *rf3.workloads(),
        ]
        points = plan(workloads, settings.concurrencies, settings.rounds)
        estimate = len(points) * (settings.warmup_s + settings.duration_s + POINT_OVERHEAD_S)
        print(f"{len(points)} points, about {estimate / 60:.1f} min", flush=True)
        sending_s = settings.warmup_s + settings.duration_s + 0.5  # the last calls' latency
        forwarded_before = {c.name: await c.forwarded_calls() for c in (rf1, rf3)}
        counters_before = await rf3.replication_counters()
        with GeneratorPool(1, make_bench_client) as pool:
            runner = PointRunner(pool, {s.name: s for s in systems}, len(points))
            for point in points:
                spec = load_spec(settings, point)
                if point.client.workload == RENEW:
                    rate = measured_rate(runner.figures, point.client, point.concurrency)
                    spec = signers[point.client.system].prepare(
                        spec, renewals_needed(sending_s, rate)
                    )
                await runner.measure(spec, f"round {point.round}", f"c={point.concurrency}")
        forwarded = {
            c.name: difference(await c.forwarded_calls(), forwarded_before[c.name])
            for c in (rf1, rf3)
        }
        counters = difference(await rf3.replication_counters(), counters_before)
        native = await native_points(settings, new, rf1, rf3) if settings.native else []
    finally:
        await stop_all(running)
        shutil.rmtree(records, ignore_errors=True)
    rows = summarize(runner.figures)
    notes = [
        *(["h2load was not run (--no-native)."] if not settings.native else []),
        f"{RF1} runs with replication factor 1 so that a handle has one owner and the "
        f"forwarded path exists; with {NODES} replicas on {NODES} nodes every lookup is local.",
        f"node 0 of {RF1} forwarded {forwarded[RF1]['Lookup']:,.0f} Lookup and "
        f"{forwarded[RF1]['LookupMany']:,.0f} LookupMany calls; node 0 of {RF3} forwarded "
        f"{forwarded[RF3]['Lookup']:,.0f} Lookup, sent {forwarded[RF3]['Versions']:,.0f} "
        f"Versions (QUORUM reads) and {forwarded[RF3]['Apply']:,.0f} Apply (replica writes) "
        "calls during the points (warm-ups included).",
        *renewal_notes(rf3, counters),
        "server CPU at rest, ms per s (counted in CPU/op, most at the slowest points): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in idle.items()),
        "At c=16 one Python generator process shares the two cores with the servers and is "
        "the first to saturate: compare server CPU/op there, and latency at c=1.",
    ]
    report = {
        "run": {
            "started_at": started_at,
            "finished_at": timestamp(),
            "command": sys.argv,
            "before": before,
            "after": describe_tree(),
            "before_tree": str(tree),  # removed by now
            "clusters": {
                c.name: {
                    "replication_factor": c.replication_factor,
                    "write_quorum": c.write_quorum,
                    "epoch": c.epoch,
                    "users_loaded_s": c.load_seconds,
                }
                for c in (rf1, rf3)
            },
            "forwarded_calls": forwarded,
            "replication_counters": counters,
            "renewal_users": renewing,
            "renewals_signed": {name: signer.signed for name, signer in signers.items()},
            "renewals_dir": str(records),  # removed by now
            "machine": machine,
            "notes": notes,
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
        },
        "rows": [dataclasses.asdict(r) for r in rows],
        "native": [dataclasses.asdict(r) for r in native],
        "native_comparisons": native_comparisons(native),
        "comparisons": [
            {
                "label": c.label,
                "concurrency": c.base.concurrency,
                "p50_delta_us": c.p50_delta_us,
                "p99_ratio": c.ratio("p99_us"),
                "ops_ratio": c.ratio("ops_per_s"),
                "cpu_ratio": c.ratio("cpu_ms_per_op"),
            }
            for c in comparisons(rows)
        ],
        "figures": [dataclasses.asdict(f) for f in runner.figures],
    }
    return report, rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description="Cluster forwarding and replication cost, and single-node Lookup "
        "before/after a revision.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke test: 200 users, 1 round, short points")
    add("--users", type=int, help="users (default 2000; quick 200)")
    add("--seed", type=int, default=1, help="data set seed")
    add("--rounds", type=int, help="interleaved rounds (default 2; quick 1)")
    add("--concurrency", default="", help="requests in flight, comma-separated (default 1,16)")
    add("--duration", type=float, help="measured seconds per point (default 2.5; quick 0.5)")
    add("--warmup", type=float, help="unmeasured seconds before a point (default 0.5; quick 0.1)")
    add("--connections", type=int, default=4, help="client connections per point, at most")
    add("--before", default=DEFAULT_BEFORE, help=f"older revision (default {DEFAULT_BEFORE})")
    add("--load-concurrency", type=int, default=16, help="users registered at a time")
    add("--no-native", action="store_true", help="skip the h2load points")
    add("--save", action="store_true", help="also write the report into --save-dir")
    add("--save-dir", type=Path, default=BASELINES, help="where --save writes (baselines)")
    return parser


def settings_from_args(argv: Sequence[str]) -> Settings:
    args = _parser().parse_args(argv)
    quick = bool(args.quick)
    try:
        concurrencies = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError as exc:
        raise SetupError(f"--concurrency: {exc}") from exc
    settings = Settings(
        users=args.users or (200 if quick else 2000),
        seed=args.seed,
        rounds=args.rounds or (1 if quick else 2),
        concurrencies=concurrencies or ((1, 4) if quick else (1, 16)),
        duration_s=args.duration or (0.5 if quick else 2.5),
        warmup_s=args.warmup if args.warmup is not None else (0.1 if quick else 0.5),
        connections=args.connections,
        before=args.before,
        load_concurrency=args.load_concurrency,
        quick=quick,
        save_dir=args.save_dir if args.save else None,
        idle_s=0.5 if quick else 2.0,
        native=not args.no_native,
    )
    if min(settings.users, settings.rounds, settings.connections, *settings.concurrencies) < 1:
        raise SetupError("--users, --rounds, --connections and --concurrency must be >= 1")
    if settings.load_concurrency < 1:
        raise SetupError("--load-concurrency must be at least 1")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = settings_from_args(list(sys.argv[1:] if argv is None else argv))
        before = _git("rev-parse", "--verify", "--short", f"{settings.before}^{{commit}}")
        with checkout(before) as tree:
            report, rows = run_event_loop(measure(settings, tree, before))
    except SetupError as exc:
        print(f"benchmarks.cluster: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("benchmarks.cluster: interrupted; every process and the worktree removed")
        return 130
    text = markdown(report, rows)
    print("\n" + text)
    if settings.save_dir is not None:
        print(f"saved: {save(report, text, settings.save_dir)}")
    failed = sum(r.failures for r in rows)
    if failed:
        print(f"{failed} point(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
