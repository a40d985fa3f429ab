"""``python -m benchmarks.cluster``: what a cluster's forwarding costs, and single-node
lookups before and after the cluster work, in ONE run of interleaved rounds.

Two comparisons, each within itself like for like:

1. **before / after**: a single node (no etcd) of an older revision (``--before``, default
   the commit before the cluster work) against the current tree. The older revision is
   checked out in a git worktree in a temporary directory, its generated protobuf code is
   made by its own ``protos/build_hook.py`` (what its ``make gen`` runs), and its server runs
   with this interpreter (``python -m supernode.cli`` with the worktree as working directory
   and first on ``PYTHONPATH``). Both are :class:`~benchmarks.systems.supernode.
   SupernodeSystem`\\ s over the same data set, written into each data directory by the
   current tree's store (the suite's loader); a start-up lookup through each checks the
   older server reads it. Workload: ``Lookup`` of a uniformly drawn user.
2. **local / forwarded**: a 3-node cluster (one local etcd, ``--cluster-partitions 64``)
   whose users are created through the public API (CreateAccount claims each handle in
   etcd, Login, RegisterDevice of the data set's two signed devices, so a lookup returns
   the same bytes as in part 1). Every call goes to node 0: ``lookup-local`` draws handles
   node 0 owns (answered from its store), ``lookup-forwarded`` handles another node owns
   (node 0 forwards the call to the owner: ``supernode.cluster.routing``). Their
   difference is the forwarding cost. ``lookup-many-10-local`` draws ten node-0 handles,
   ``lookup-many-10-mixed`` ten of all handles: nearly every such call needs both other
   nodes, which node 0 asks one after the other (``ClusterPresence._gather``).

Every point is a closed loop of the suite's Python generator (:mod:`benchmarks.loadgen`)
at each concurrency (default 1 and 16); points are interleaved, round by round (before,
after, then the cluster's, at each concurrency), so drift hits every system alike, and a
workload's rounds are merged: the histograms add, ops/s is the mean over rounds (with its
spread). All servers run for the whole run; the idle ones cost next to nothing.

What the figures mean:

* ``p50/p99/p99.9 ms``: latency from send to answer, in ms; at one in flight (c=1) it is
  unloaded latency, the cleanest comparison: forwarded minus local p50 is the extra hop
  (node 0's client call to the owner and the owner's server side).
* ``ops/s``: completed calls per second. At c=1 it is 1 / latency. At c=16 the two cores
  are full: a single node's Lookup (~3.6k ops/s at ~0.28 ms server CPU each) keeps its one
  single-threaded process at a core, and the Python generator, whose gRPC client costs
  about as much CPU per call, takes the other: one generator process saturates near
  3.5-4k single lookups/s here, so a faster server would not show as more ops/s
  (FINDINGS.md: h2load drives the same server ~1.5x harder). The three nodes share what the
  generator leaves, and a forwarded call adds a client half on node 0 and a server half on
  the owner, so cluster ops/s at c=16 compare total CPU per call, not one node's capacity.
* ``server CPU ms/op``: CPU of the system's server processes per call (all three nodes for
  the cluster, etcd excluded: the hot path never calls it), measured from /proc and
  independent of the generator: the forwarding cost in CPU.

h2load is not used: the suite has no h2load driver (FINDINGS.md measured it by hand).
Defaults fit in about 3 minutes on two cores; ``--quick`` (the smoke test) takes seconds
per point. The Markdown table is printed; ``--save`` also writes it and a JSON report into
``benchmarks/baselines/``. Every process and the worktree are removed at the end, on
Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import generate
from benchmarks import histogram as hist
from benchmarks.dataset import Dataset
from benchmarks.figures import Figure
from benchmarks.loadgen import CLOSED, GeneratorPool, LoadSpec
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
from benchmarks.systems.grpc_raw import RawUnaryClient, RequestEncoder, bearer
from benchmarks.systems.process import ServerProcess
from benchmarks.systems.supernode import (
    READY,
    SupernodeClient,
    SupernodeSystem,
    login_bench_client,
    method_path,
    server_argv,
)
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
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
HANDLES = "handles"  # ClientSpec option: the comma-separated handles a workload draws from
_CALL_DEADLINE_S = 10.0
_SETTLE_S = 60.0  # placement over every node; every user mirrored everywhere
_POLL_S = 0.2


# ---------------------------------------------------------------------- clients


def listed_encoder(handles: Sequence[str], batch: int) -> RequestEncoder:
    """Requests for the drawn indexes of ``handles`` (not of the data set's numbering)."""
    if batch == 1:
        return lambda ix: pb.LookupRequest(handle=handles[ix[0]]).SerializeToString()
    return lambda ix: pb.LookupManyRequest(handles=[handles[i] for i in ix]).SerializeToString()


class ListedHandlesClient(RawUnaryClient):
    """The supernode client, drawing from the handles in ``spec.options["handles"]``."""

    def __init__(self, spec: ClientSpec) -> None:
        encode = listed_encoder(spec.options[HANDLES].split(","), spec.batch)
        super().__init__(
            spec.target, method_path(spec.batch), encode, bearer(spec.options["token"])
        )


def make_bench_client(spec: ClientSpec) -> LookupClient:
    """The generator processes' client factory (module level: it is sent to them)."""
    return ListedHandlesClient(spec) if HANDLES in spec.options else SupernodeClient(spec)


def key_space(spec: ClientSpec, users: int) -> int:
    """How many keys the generator draws from: the listed handles, else every user."""
    return len(spec.options[HANDLES].split(",")) if HANDLES in spec.options else users


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
        env = {**os.environ, "PYTHONPATH": str(tree)}
        done = subprocess.run(
            [sys.executable, str(hook)], cwd=tree, env=env, capture_output=True, text=True
        )
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


# ---------------------------------------------------------------------- the cluster


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples (a counter's ``_total`` too) matching ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, f"{name}_total") and labels.items() <= sample.labels.items()
    )


async def lookup_devices(target: str, token: str, handle: str) -> int:
    """One Lookup through the public API: the number of devices it returns."""
    async with DirectoryConnection(target) as connection:
        connection.token = token
        answer = await connection.lookup(handle, deadline=_CALL_DEADLINE_S)
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
    """A local etcd and ``NODES`` nodes; every workload calls node 0 (see module docstring)."""

    name = "cluster"

    def __init__(self, load_concurrency: int = 16) -> None:
        self.load_concurrency = load_concurrency
        self.load_seconds = 0.0
        self._root: Path | None = None
        self._etcd: LocalEtcd | None = None
        self._nodes: list[ServerProcess] = []
        self._targets: list[str] = []
        self._metrics: list[str] = []
        self._token = ""
        self._local: list[str] = []
        self._remote: list[str] = []
        self._all: list[str] = []
        self.epoch = 0

    async def start(self, dataset: Dataset) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        self._etcd = LocalEtcd(1)
        await self._etcd.start()
        endpoints = ",".join(self._etcd.client_endpoints)
        for index in range(NODES):
            argv = server_argv(self._root / f"node{index}", 1)
            argv += ["--cluster-etcd-endpoints", endpoints, "--cluster-partitions", str(PARTITIONS)]
            self._nodes.append(ServerProcess(argv, READY))
        for node in self._nodes:
            ready = json.loads((await node.wait_ready(60.0)).group(1))
            self._targets.append(ready["grpc"])
            self._metrics.append(f"http://{ready['metrics']}/metrics")
        placement = await self._settled_placement()
        self._token = await login_bench_client(self._targets[0])
        began = time.monotonic()
        await register_users(self._targets, dataset, self.load_concurrency)
        devices = len(dataset.user(0, 0).devices) * dataset.users
        await settle("every user on every node", lambda: self._loaded(dataset.users, devices))
        self.load_seconds = time.monotonic() - began
        if (await self._placement()) != placement:
            raise SetupError("cluster: placement changed while users were loaded")
        self.epoch = placement.epoch
        self._all = [Dataset.handle(i) for i in range(dataset.users)]
        node0 = self._targets[0]
        self._local = [h for h in self._all if placement.owner_of_handle(h) == node0]
        self._remote = [h for h in self._all if placement.owner_of_handle(h) != node0]
        if not self._local or not self._remote:
            raise SetupError("cluster: node 0 owns all or none of the users; use more users")
        await self._check_routing()

    async def _placement(self) -> Placement | None:
        assert self._etcd is not None
        async with EtcdClient(EtcdConfig(tuple(self._etcd.client_endpoints))) as etcd:
            entry = await etcd.get(Keys("/supernode").placement)
        return None if entry is None else Placement.from_bytes(entry.value)

    async def _node_metric(self, index: int, name: str, **labels: str) -> float:
        return metric(await asyncio.to_thread(_scrape, self._metrics[index]), name, **labels)

    async def _settled_placement(self) -> Placement:
        """Placement over every node, and every node routing by it."""
        found: list[Placement] = []

        async def placed() -> bool:
            placement = await self._placement()
            if placement is None or placement.nodes() != set(self._targets):
                return False
            epochs = [
                await self._node_metric(i, "supernode_cluster_placement_epoch")
                for i in range(NODES)
            ]
            found[:] = [placement]
            return all(epoch == placement.epoch for epoch in epochs)

        await settle("placement over every node", placed)
        return found[0]

    async def _loaded(self, users: int, devices: int) -> bool:
        """Every account in every node's mirror (the bench client's too), and ``devices``
        stored over the nodes (each on its owner)."""
        accounts = [await self._node_metric(i, "supernode_accounts") for i in range(NODES)]
        online = [await self._node_metric(i, "supernode_devices_online") for i in range(NODES)]
        return all(a == users + 1 for a in accounts) and sum(online) == devices

    async def _check_routing(self) -> None:
        """A local handle's lookup is not forwarded and a remote one's is, once each."""
        counter = "supernode_cluster_forwarded_calls"
        before = await self._node_metric(0, counter, method="Lookup")
        for handle in (self._local[0], self._remote[0]):
            if await lookup_devices(self._targets[0], self._token, handle) == 0:
                raise SetupError(f"cluster: {handle} has no devices after loading")
        forwarded = await self._node_metric(0, counter, method="Lookup") - before
        if forwarded != 1:
            raise SetupError(f"cluster: 2 lookups (local, remote) forwarded {forwarded:g} times")

    async def forwarded_calls(self) -> dict[str, float]:
        """Node 0's calls forwarded to the owners so far, by internal method."""
        text = await asyncio.to_thread(_scrape, self._metrics[0])
        return {
            m: metric(text, "supernode_cluster_forwarded_calls", method=m)
            for m in ("Lookup", "LookupMany")
        }

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self._nodes))  # etcd still up for them
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
        node0, token = self._targets[0], self._token

        def spec(workload: str, batch: int, handles: list[str]) -> ClientSpec:
            options = {"token": token, HANDLES: ",".join(handles)}
            return ClientSpec(self.name, workload, node0, batch, options)

        return [
            spec("lookup-local", 1, self._local),
            spec("lookup-forwarded", 1, self._remote),
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
    return LoadSpec(
        point.client,
        CLOSED,
        settings.duration_s,
        warmup_s=settings.warmup_s,
        concurrency=point.concurrency,
        connections=min(settings.connections, point.concurrency),
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
    ("cluster: forwarded / local", ("cluster", "lookup-local"), ("cluster", "lookup-forwarded")),
    (
        f"cluster LookupMany-{BATCH}: mixed / local",
        ("cluster", f"lookup-many-{BATCH}-local"),
        ("cluster", f"lookup-many-{BATCH}-mixed"),
    ),
    ("local path: cluster / single node", ("after", "lookup"), ("cluster", "lookup-local")),
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
    lines = [
        f"# Cluster forwarding and single-node lookups, {run['started_at']}",
        "",
        f"{run['users']:,} users (seed {run['seed']}), {run['rounds']} interleaved round(s), "
        f"{run['duration_s']:g} s per point after {run['warmup_s']:g} s warm-up, closed loop, "
        f"one Python generator process, up to {run['connections']} connections"
        f"{' (quick mode)' if run['quick'] else ''}. before = {run['before']}, after = "
        f"{run['after']}; cluster: {NODES} nodes, {PARTITIONS} partitions, epoch "
        f"{run['placement_epoch']}, every call to node 0 ({run['cluster_users_loaded_s']:.1f} s "
        "to load the users through the API).",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in run["machine"].items()) + ".",
        "",
        *markdown_table(header, table),
        "",
        *markdown_table(diff_header, diffs),
        "",
    ]
    lines += [f"- {note}" for note in run["notes"]]
    return "\n".join(lines) + "\n"


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


async def measure(settings: Settings, tree: Path, before: str) -> tuple[dict[str, Any], list[Row]]:
    started_at = timestamp()
    machine = describe_machine()
    dataset = Dataset(settings.users, settings.seed)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    old = SupernodeSystem(name="before", tree=tree)
    new = SupernodeSystem(name="after")
    cluster = ClusterSystem(settings.load_concurrency)
    systems: list[System] = [old, new, cluster]
    running: list[System] = []
    try:
        for system in systems:
            print(f"starting {system.name} with {settings.users:,} users ...", flush=True)
            running.append(system)
            await system.start(dataset)
        for system in (old, new):  # the older revision reads the store the suite wrote
            single = system.workloads()[0]
            handle = Dataset.handle(settings.users - 1)
            if await lookup_devices(single.target, single.options["token"], handle) == 0:
                raise SetupError(f"{system.name}: {handle} has no devices; unreadable store?")
        idle = await idle_cpu_ms_per_s(systems, settings.idle_s)
        workloads = [old.workloads()[0], new.workloads()[0], *cluster.workloads()]
        points = plan(workloads, settings.concurrencies, settings.rounds)
        estimate = len(points) * (settings.warmup_s + settings.duration_s + POINT_OVERHEAD_S)
        print(f"{len(points)} points, about {estimate / 60:.1f} min", flush=True)
        with GeneratorPool(1, make_bench_client) as pool:
            runner = PointRunner(pool, {s.name: s for s in systems}, len(points))
            for point in points:
                spec = load_spec(settings, point)
                await runner.measure(spec, f"round {point.round}", f"c={point.concurrency}")
        forwarded = await cluster.forwarded_calls()
    finally:
        for system in reversed(running):
            try:
                await system.stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {system.name} failed: {exc}", file=sys.stderr)
    rows = summarize(runner.figures)
    notes = [
        "h2load was not run: the benchmark suite has no h2load driver.",
        f"node 0 forwarded {forwarded['Lookup']:,.0f} Lookup and {forwarded['LookupMany']:,.0f} "
        "LookupMany calls in the run (warm-up included).",
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
            "placement_epoch": cluster.epoch,
            "forwarded_calls": forwarded,
            "cluster_users_loaded_s": cluster.load_seconds,
            "machine": machine,
            "notes": notes,
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
        },
        "rows": [dataclasses.asdict(r) for r in rows],
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
        description="Cluster forwarding cost, and single-node Lookup before/after a revision.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke test: 200 users, 1 round, short points")
    add("--users", type=int, help="users (default 2000; quick 200)")
    add("--seed", type=int, default=1, help="data set seed")
    add("--rounds", type=int, help="interleaved rounds (default 2; quick 1)")
    add("--concurrency", default="", help="requests in flight, comma-separated (default 1,16)")
    add("--duration", type=float, help="measured seconds per point (default 3; quick 0.5)")
    add("--warmup", type=float, help="unmeasured seconds before a point (default 0.5; quick 0.1)")
    add("--connections", type=int, default=4, help="client connections per point, at most")
    add("--before", default=DEFAULT_BEFORE, help=f"older revision (default {DEFAULT_BEFORE})")
    add("--load-concurrency", type=int, default=16, help="users registered at a time")
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
        duration_s=args.duration or (0.5 if quick else 3.0),
        warmup_s=args.warmup if args.warmup is not None else (0.1 if quick else 0.5),
        connections=args.connections,
        before=args.before,
        load_concurrency=args.load_concurrency,
        quick=quick,
        save_dir=args.save_dir if args.save else None,
        idle_s=0.5 if quick else 2.0,
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
