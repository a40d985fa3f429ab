"""``python -m benchmarks.cluster_join``: lookup latency and watch notification delay while a
4th node joins a 3-node cluster, against the steady state before and after, in one run.

A join is where a cluster pays for growing: partitions stream to the new node, writes go to
the old and the new replica sets at once, replicas refuse calls routed by an older epoch and
coordinators route them again. This measures what a user sees of it:

* **lookups**: an open loop at a fixed rate (``--lookup-rate``, Poisson arrivals), each a
  single ``Lookup`` of a uniformly drawn user, sent round-robin to the three first nodes (a
  client that knows nothing of the ring: after the join each node holds three partitions in
  four, so about one lookup in four is forwarded in the last phase). Latency counts from the
  scheduled send time, so a stall is charged to every lookup it delays; a lookup belongs to
  the phase its scheduled time falls in. Failures are counted by status code.
* **notifications**: a watcher (one ``Watch`` stream at node 1) follows the first
  ``--watched`` users; a writer changes their devices at ``--write-rate`` (RegisterDevice,
  next seq, an endpoint on a port of its own so that each is a watch event,
  signed at send time), round-robin over the three first nodes. The delay is from
  the renewal's send to the watcher receiving its event; an acknowledged renewal whose
  event never arrives is counted as missed (a watch that had to take a snapshot would show
  here).

Phases: ``steady`` (``--steady`` seconds), ``join`` (from starting node 3 until the
placement holds it, nothing moves and every node routes by the final epoch; at most
``--max-moving`` partitions move at once, default 4, so the join takes several steps, each
a stream, a catch-up and a flip, as a real cluster's would), ``after``
(``--steady`` seconds). All load runs in this one process (uvloop), so the client's own
scheduling noise is in every phase alike. The Markdown table is printed; ``--save`` writes
it and a JSON report into ``benchmarks/baselines/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from benchmarks import generate
from benchmarks.cluster import (
    BASELINES,
    NODES,
    PARTITIONS,
    ClusterSystem,
    RenewalSigner,
    describe_tree,
    login_users,
)
from benchmarks.dataset import Dataset
from benchmarks.phases import OK, PhaseLedger, Phases, PhaseSummary, WriteKey, ratio, summarize
from benchmarks.report import format_ms, markdown_table
from benchmarks.run import SetupError, describe_machine, run_event_loop, timestamp
from benchmarks.systems.grpc_raw import CHANNEL_OPTIONS, CONNECT_TIMEOUT_S, bearer
from client_sdk.protocol.v1 import directory_pb2 as pb

STEADY, JOIN, AFTER = "steady", "join", "after"
LOOKUP_PATH = "/supernode.v1.PresenceService/Lookup"
REGISTER_PATH = "/supernode.v1.PresenceService/RegisterDevice"
WATCH_PATH = "/supernode.v1.PresenceService/Watch"
_CALL_DEADLINE_S = 10.0
_MAX_IN_FLIGHT = 1024  # lookups past this are counted as DROPPED, never queued unboundedly
_JOIN_WITHIN_S = 180.0
_DRAIN_S = 10.0  # after the load stops: the last events may still arrive
_WATCH_RETRIES = 20


@dataclass(frozen=True)
class Settings:
    users: int
    seed: int
    lookup_rate: float
    write_rate: float
    watched: int
    steady_s: float
    max_moving: int
    stream_share: float
    load_concurrency: int
    quick: bool
    save_dir: Path | None


class Calls:
    """One channel per node, and the unary calls this benchmark makes on them."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self._channels = [grpc.aio.insecure_channel(t, options=CHANNEL_OPTIONS) for t in targets]
        self.lookup = [c.unary_unary(LOOKUP_PATH) for c in self._channels]
        self.register = [c.unary_unary(REGISTER_PATH) for c in self._channels]
        self.watch = [c.unary_stream(WATCH_PATH) for c in self._channels]

    async def ready(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await asyncio.gather(*(c.channel_ready() for c in self._channels))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels), return_exceptions=True)


async def wait_at_most(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` have passed (asyncio.timeout, never wait_for:
    see tests/unit/test_layering.py)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return type(exc).__name__


async def lookups(
    calls: Calls, token: str, users: int, rate: float, ledger: PhaseLedger, stop: asyncio.Event
) -> None:
    """Poisson arrivals at ``rate`` until ``stop``; each lookup's latency from its
    scheduled time, recorded in the phase of that time."""
    metadata = bearer(token)
    draw = random.Random(1)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, node: int, handle: str) -> None:
        request = pb.LookupRequest(handle=handle).SerializeToString()
        try:
            await calls.lookup[node](request, metadata=metadata, timeout=_CALL_DEADLINE_S)
            outcome = OK
        except Exception as exc:  # every failure is counted by kind, none is lost
            outcome = _outcome(exc)
        ledger.lookup(scheduled, time.monotonic(), outcome)

    scheduled = time.monotonic()
    for count in itertools.count():
        scheduled += draw.expovariate(rate)
        if stop.is_set():
            break
        delay = scheduled - time.monotonic()
        if delay > 0:
            await wait_at_most(stop, delay)
            if stop.is_set():
                break
        handle = Dataset.handle(draw.randrange(users))
        if len(in_flight) >= _MAX_IN_FLIGHT:
            ledger.lookup(scheduled, time.monotonic(), "DROPPED")
            continue
        task = asyncio.create_task(one(scheduled, count % len(calls.targets), handle))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)


def write_key(request: bytes) -> WriteKey:
    record = pb.DeviceRecord.FromString(pb.RegisterDeviceRequest.FromString(request).signed.record)
    return record.handle, record.device_id, record.seq


async def writes(
    calls: Calls, signer: RenewalSigner, rate: float, ledger: PhaseLedger, stop: asyncio.Event
) -> None:
    """Renewals of the watched users' devices at ``rate``, one at a time per device (the
    signer's order keeps each device's seqs rising)."""
    metadata = [bearer(token) for token in signer.tokens]
    pending: set[asyncio.Task[None]] = set()

    async def one(node: int, token: int, request: bytes) -> None:
        key = write_key(request)
        ledger.write_sent(key, time.monotonic())
        try:
            await calls.register[node](request, metadata=metadata[token], timeout=_CALL_DEADLINE_S)
            ledger.write_answered(key, True)
        except Exception:  # a failed renewal is counted; its event may or may not come
            ledger.write_answered(key, False)

    while not stop.is_set():
        ((node, token, request),) = signer.sign(1, generate.now_ms(), visible=True).calls
        task = asyncio.create_task(one(node, token, request))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await wait_at_most(stop, 1.0 / rate)
    await asyncio.gather(*pending)


@dataclass
class WatchCounters:
    streams: int = 0  # streams opened
    resumed: int = 0  # reopened streams that resumed where the last one ended
    snapshots: int = 0  # streams that began with a snapshot (the first one, and any gap)
    # Set whenever an event leaves no acknowledged write waiting for its own.
    caught_up: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, repr=False)


async def watcher(
    calls: Calls, node: int, token: str, handles: Sequence[str], ledger: PhaseLedger,
    counters: WatchCounters, ready: asyncio.Event,
) -> None:  # fmt: skip
    """Follow ``handles`` at ``node`` until cancelled, resuming after a cut stream."""
    epoch, revision = "", 0
    for _ in range(_WATCH_RETRIES):
        request = pb.WatchRequest(handles=handles, epoch=epoch, revision=revision)
        stream = calls.watch[node](request.SerializeToString(), metadata=bearer(token))
        counters.streams += 1
        try:
            async for raw in stream:
                event = pb.WatchEvent.FromString(raw)
                epoch, revision = event.epoch or epoch, event.revision or revision
                if event.resumed:
                    counters.resumed += 1
                elif event.HasField("snapshot"):
                    counters.snapshots += 1
                    ready.set()
                elif event.HasField("change") and event.change.HasField("device"):
                    record = pb.DeviceRecord.FromString(event.change.device.signed.record)
                    key = (record.handle, record.device_id, record.seq)
                    ledger.event(key, time.monotonic())
                    if not ledger.outstanding():
                        counters.caught_up.set()
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)  # cut off: reopen from the last position
    raise SetupError(f"watch at node {node} cut off {_WATCH_RETRIES} times")


async def joined(cluster: ClusterSystem) -> dict[str, float]:
    """Start node 3 and wait until the cluster holds it and is settled; the move metrics."""
    await cluster.add_node()
    placement = await cluster.settled_placement(_JOIN_WITHIN_S)
    new = len(cluster.targets) - 1
    return {
        "epoch": float(placement.epoch),
        "partitions_streamed": await cluster.node_metric(
            new, "supernode_cluster_partitions_streamed"
        ),
        "stream_bytes": await cluster.node_metric(new, "supernode_cluster_stream_bytes"),
        "stream_versions": await cluster.node_metric(new, "supernode_cluster_stream_versions"),
    }


async def measure(settings: Settings) -> tuple[dict[str, Any], list[PhaseSummary]]:
    started_at = timestamp()
    dataset = Dataset(settings.users, settings.seed)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    moving = ["--cluster-max-moving-partitions", str(settings.max_moving),
              "--cluster-stream-share", str(settings.stream_share)]  # fmt: skip
    cluster = ClusterSystem("cluster-join", NODES, settings.load_concurrency, moving)
    records = Path(tempfile.mkdtemp(prefix="bench-join-"))
    calls: Calls | None = None
    try:
        print(f"starting a {NODES}-node cluster with {settings.users:,} users ...", flush=True)
        await cluster.start(dataset)
        original = list(cluster.targets)
        watched = min(settings.watched, settings.users)
        tokens = await login_users(original[0], dataset, watched)
        signer = RenewalSigner(dataset, tokens, original, records)
        await signer.check(cluster.name)
        calls = Calls(original)
        await calls.ready()
        phases = Phases(STEADY, time.monotonic())
        ledger = PhaseLedger(phases)
        counters, watching = WatchCounters(), asyncio.Event()
        handles = [Dataset.handle(i) for i in range(watched)]
        watch = asyncio.create_task(
            watcher(calls, 1, cluster.token, handles, ledger, counters, watching)
        )
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await watching.wait()
        stop = asyncio.Event()
        phases = Phases(STEADY, time.monotonic())  # the load begins now
        ledger.phases = phases
        load = [
            asyncio.create_task(
                lookups(calls, cluster.token, settings.users, settings.lookup_rate, ledger, stop)
            ),
            asyncio.create_task(writes(calls, signer, settings.write_rate, ledger, stop)),
        ]
        print(f"steady state for {settings.steady_s:g} s ...", flush=True)
        await asyncio.sleep(settings.steady_s)
        phases.begin(JOIN, time.monotonic())
        print("node 3 joins ...", flush=True)
        moved = await joined(cluster)
        phases.begin(AFTER, time.monotonic())
        print(f"joined in {phases.duration(JOIN, time.monotonic()):.1f} s; after ...", flush=True)
        await asyncio.sleep(settings.steady_s)
        end = time.monotonic()
        stop.set()
        await asyncio.gather(*load)
        counters.caught_up.clear()  # the last events may still be on their way
        if ledger.outstanding():
            await wait_at_most(counters.caught_up, _DRAIN_S)
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    finally:
        if calls is not None:
            await calls.close()
        await cluster.stop()
        shutil.rmtree(records, ignore_errors=True)
    rows = summarize(ledger, end)
    report = {
        "run": {
            "started_at": started_at,
            "finished_at": timestamp(),
            "command": sys.argv,
            "tree": describe_tree(),
            "machine": describe_machine(),
            "nodes_before": NODES,
            "partitions": PARTITIONS,
            "replication_factor": cluster.replication_factor,
            "write_quorum": cluster.write_quorum,
            "users_loaded_s": cluster.load_seconds,
            "watched": watched,
            "join": moved,
            "watch": {k: v for k, v in vars(counters).items() if k != "caught_up"},
            "unexpected_events": ledger.unexpected_events,
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
        },
        "phases": [dataclasses.asdict(row) for row in rows],
        "ratios": {
            f"{field} {JOIN}/{STEADY}": ratio(rows, field, JOIN, STEADY)
            for field in ("lookup_p99_us", "lookup_p999_us", "delay_p99_us")
        },
    }
    return report, rows


def markdown(report: dict[str, Any], rows: Sequence[PhaseSummary]) -> str:
    run = report["run"]
    header = ["phase", "s", "lookups", "success", "failed", "p50 ms", "p99 ms", "p99.9 ms",
              "max ms", "renewals acked (failed)", "notified", "missed", "delay p50 ms",
              "delay p99 ms", "delay max ms"]  # fmt: skip
    table = [
        [r.phase, f"{r.seconds:.1f}", f"{r.lookups:,}",
         "n/a" if r.lookup_success is None else f"{100 * r.lookup_success:.2f} %",
         ", ".join(f"{code} {n}" for code, n in r.lookups_failed.items()) or "0",
         format_ms(r.lookup_p50_us), format_ms(r.lookup_p99_us), format_ms(r.lookup_p999_us),
         format_ms(r.lookup_max_us), f"{r.writes_acknowledged:,} ({r.writes_failed})",
         f"{r.notified:,}",
         str(r.missed), format_ms(r.delay_p50_us), format_ms(r.delay_p99_us),
         format_ms(r.delay_max_us)]
        for r in rows
    ]  # fmt: skip
    join, watch = run["join"], run["watch"]
    ratios = ", ".join(
        f"{name} {value:.2f}x" for name, value in report["ratios"].items() if value is not None
    )
    lines = [
        f"# Lookups and watch notifications during a join, {run['started_at']}",
        "",
        f"{run['users']:,} users on {run['nodes_before']} nodes (RF {run['replication_factor']}, "
        f"W {run['write_quorum']}, {run['partitions']} partitions), then a 4th node joins, "
        f"{run['max_moving']} partitions moving at a time, each source streaming at most "
        f"{run['stream_share']:g} of its time. "
        f"Lookups: open loop at {run['lookup_rate']:g}/s, round-robin over the first three "
        f"nodes; renewals of {run['watched']} watched users at {run['write_rate']:g}/s, "
        f"a watcher at node 1. Tree {run['tree']}{' (quick mode)' if run['quick'] else ''}.",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in run["machine"].items()) + ".",
        "",
        *markdown_table(header, table),
        "",
        f"- The join moved {join['partitions_streamed']:.0f} partitions to the new node "
        f"({join['stream_versions']:,.0f} versions, {join['stream_bytes']:,.0f} bytes "
        f"streamed), final epoch {join['epoch']:.0f}.",
        f"- Ratios: {ratios or 'n/a'}.",
        f"- Watch streams opened {watch['streams']}, resumed {watch['resumed']}, snapshots "
        f"{watch['snapshots']} (1 is the first stream's); events of no renewal sent here: "
        f"{run['unexpected_events']}.",
        "- After the join each of the first three nodes holds three partitions in four, so "
        "about a quarter of the last phase's lookups are forwarded (a ring-aware client "
        "would send them to a replica).",
    ]
    return "\n".join(lines) + "\n"


def save(report: dict[str, Any], text: str, directory: Path) -> Path:
    """``<date>-cluster-join.json`` and ``.md`` in ``directory`` (never overwritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{report['run']['started_at'][:10]}-cluster-join"
    path = directory / f"{stem}.json"
    for n in itertools.count(2):
        if not path.exists():
            break
        path = directory / f"{stem}-{n}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(text)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_join", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke test: 200 users, short phases, low rates")
    add("--users", type=int, help="users (default 10000; quick 200)")
    add("--seed", type=int, default=1)
    add("--lookup-rate", type=float, help="lookups per second (default 400; quick 100)")
    add("--write-rate", type=float, help="renewals per second (default 40; quick 20)")
    add("--watched", type=int, default=64, help="users watched and renewed (default 64)")
    add("--steady", type=float, help="seconds before and after the join (default 20; quick 3)")
    add(
        "--max-moving",
        type=int,
        default=4,
        help="partitions moving at once (--cluster-max-moving-partitions; default 4)",
    )
    add(
        "--stream-share",
        type=float,
        default=0.5,
        help="a move source's share of time streaming (--cluster-stream-share; default 0.5)",
    )
    add("--load-concurrency", type=int, default=16, help="registrations in flight at setup")
    add("--save", action="store_true", help="write the report into benchmarks/baselines/")
    add("--save-dir", type=Path, help="where --save writes (default benchmarks/baselines/)")
    return parser


def settings_from_args(argv: Sequence[str]) -> Settings:
    args = _parser().parse_args(argv)
    quick = bool(args.quick)
    for name in (
        "users",
        "lookup_rate",
        "write_rate",
        "steady",
        "watched",
        "max_moving",
        "stream_share",
    ):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, not {value}")
    if args.stream_share > 1:
        raise SystemExit(f"--stream-share must be at most 1, not {args.stream_share}")
    return Settings(
        users=args.users or (200 if quick else 10_000),
        seed=args.seed,
        lookup_rate=args.lookup_rate or (100.0 if quick else 400.0),
        write_rate=args.write_rate or (20.0 if quick else 40.0),
        watched=args.watched,
        steady_s=args.steady or (3.0 if quick else 20.0),
        max_moving=args.max_moving,
        stream_share=args.stream_share,
        load_concurrency=args.load_concurrency,
        quick=quick,
        save_dir=(args.save_dir or BASELINES) if args.save else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from_args(sys.argv[1:] if argv is None else argv)
    try:
        report, rows = run_event_loop(measure(settings))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown(report, rows)
    print(text)
    if settings.save_dir is not None:
        print(f"saved {save(report, text, settings.save_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
