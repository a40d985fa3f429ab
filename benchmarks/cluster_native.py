"""The cluster benchmark's native-generator points: h2load (:mod:`benchmarks.native`)
driving single lookups of a single node and of the 3-node clusters, where the suite's Python
generator saturates before the servers do.

h2load sends one fixed body, so each h2load process looks up one handle; a case runs
several at once to mix handles:

* **1 node** (``after``): three h2loads on the single node, three handles.
* **3 nodes, RF 3, ring-aware**: one h2load per node, each a handle it holds (every node
  holds every partition): the cluster's throughput against one node's.
* **RF 1, proxied**: three h2loads on node 0, handles owned by node 0, 1 and 2: two in
  three calls are forwarded, as for a client that knows nothing of the ring.
* **RF 1, ring-aware**: the same three handles, each h2load on the handle's owner.

Every case has the same number of h2load processes, connections and streams, so the total
in flight is equal; what differs is where the calls go. A case is judged by the servers'
own counters (h2load sees only HTTP status): the ``Lookup`` calls answered OK by the nodes
the h2loads called must cover every request h2load completed, with no error, or the case
is reported failed. Unloaded latency (one call at a time) is measured for the single node
and for a remote handle of RF 1, proxied against ring-aware (the forwarding hop alone).
Server CPU per call is the CPU of the system's processes over the case, divided by the
requests h2load completed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks import histogram as hist
from benchmarks.native import (
    NativePoint,
    NativeTarget,
    ServerCounts,
    judge,
    run_many,
    scrape_counts,
)
from benchmarks.procstat import total_cpu_seconds
from benchmarks.systems.grpc_raw import bearer
from client_sdk.protocol.v1 import directory_pb2 as pb

LOOKUP_PATH = "/supernode.v1.PresenceService/Lookup"
H2LOADS = 3  # h2load processes per loaded case (one per handle)
LOADED = (4, 8)  # clients, streams per h2load: 96 calls in flight per case
UNLOADED = (1, 1)


@dataclass(frozen=True)
class Node:
    """A node to call: its client address and its Prometheus scrape URL."""

    target: str
    metrics_url: str


@dataclass(frozen=True)
class Case:
    """One native point: the (node, handle) each h2load calls, with the system's token."""

    label: str
    system: str
    calls: tuple[tuple[Node, str], ...]
    token: str
    pids: tuple[int, ...]
    clients: int
    streams: int


@dataclass
class CaseResult:
    case: Case
    points: list[NativePoint] = field(default_factory=list)  # one per round
    cpu_ms_per_op: list[float | None] = field(default_factory=list)  # one per round


@dataclass(frozen=True)
class NativeRow:
    label: str
    system: str
    h2loads: int
    clients: int
    streams: int
    rounds: int
    req_per_s: float  # mean over rounds
    p50_ms: float
    p99_ms: float
    p999_ms: float
    cpu_ms_per_op: float | None
    failures: list[str]


def loaded_cases(
    single: tuple[Node, str, tuple[int, ...]],
    rf3: tuple[Sequence[Node], str, tuple[int, ...]],
    rf1: tuple[Sequence[Node], str, tuple[int, ...], Sequence[str]],
    handles: Sequence[str],
) -> list[Case]:
    """The loaded cases (module docstring). ``rf1``'s handles: one owned by each node, in
    node order; ``handles``: any three users (every replica of RF 3 holds them)."""
    node, token, pids = single
    rf3_nodes, rf3_token, rf3_pids = rf3
    rf1_nodes, rf1_token, rf1_pids, owned = rf1
    c, m = LOADED
    return [
        Case("1 node", "after", tuple((node, h) for h in handles[:H2LOADS]), token, pids, c, m),
        Case("3 nodes RF3 ring-aware", "cluster-rf3",
             tuple(zip(rf3_nodes, handles[:H2LOADS], strict=True)), rf3_token, rf3_pids, c, m),
        Case("RF1 proxied (all via node 0)", "cluster-rf1",
             tuple((rf1_nodes[0], h) for h in owned), rf1_token, rf1_pids, c, m),
        Case("RF1 ring-aware (each to its owner)", "cluster-rf1",
             tuple(zip(rf1_nodes, owned, strict=True)), rf1_token, rf1_pids, c, m),
    ]  # fmt: skip


def unloaded_cases(
    single: tuple[Node, str, tuple[int, ...]],
    rf1: tuple[Sequence[Node], str, tuple[int, ...], Sequence[str]],
    handle: str,
) -> list[Case]:
    """One call at a time: the single node, and a handle node 1 owns, via node 0 or direct."""
    node, token, pids = single
    nodes, rf1_token, rf1_pids, owned = rf1
    c, m = UNLOADED
    return [
        Case("1 node, one at a time", "after", ((node, handle),), token, pids, c, m),
        Case("RF1 proxied, one at a time", "cluster-rf1", ((nodes[0], owned[1]),), rf1_token,
             rf1_pids, c, m),
        Case("RF1 ring-aware, one at a time", "cluster-rf1", ((nodes[1], owned[1]),),
             rf1_token, rf1_pids, c, m),
    ]  # fmt: skip


async def _counts(nodes: Sequence[Node]) -> ServerCounts:
    counted = await asyncio.gather(*(scrape_counts(n.metrics_url, "Lookup") for n in nodes))
    return sum(counted, ServerCounts(0, 0))


async def measure_case(
    case: Case, duration_s: float, warmup_s: float
) -> tuple[NativePoint, float | None]:
    """Run the case's h2loads at once: the merged point, judged by the called nodes'
    counts, and the system's server CPU per call (ms)."""
    called = list(dict.fromkeys(node for node, _ in case.calls))
    targets = [
        NativeTarget(node.target, LOOKUP_PATH, pb.LookupRequest(handle=handle).SerializeToString(),
                     bearer(case.token))
        for node, handle in case.calls
    ]  # fmt: skip
    before, cpu_before = await _counts(called), total_cpu_seconds(case.pids)
    run = await run_many(
        targets, duration_s=duration_s, warmup_s=warmup_s, clients=case.clients,
        streams=case.streams,
    )  # fmt: skip
    cpu = total_cpu_seconds(case.pids) - cpu_before
    counts = await _counts(called)
    point = judge(run.total, counts - before)
    # The CPU covers warm-up too: per call of everything the servers answered OK.
    return point, (1000 * cpu / point.server_ok if point.server_ok else None)


def summarize(results: Sequence[CaseResult]) -> list[NativeRow]:
    rows = []
    for result in results:
        ok = [p for p in result.points if p.failure is None]
        merged = hist.summarize(hist.merge(p.histogram for p in ok))
        cpu = [
            c for p, c in zip(result.points, result.cpu_ms_per_op, strict=True)
            if p.failure is None and c is not None
        ]  # fmt: skip
        case = result.case
        rows.append(
            NativeRow(
                case.label, case.system, len(case.calls), case.clients, case.streams, len(ok),
                sum(p.req_per_s for p in ok) / len(ok) if ok else 0.0,
                merged.p50 / 1000, merged.p99 / 1000, merged.p999 / 1000,
                sum(cpu) / len(cpu) if cpu else None,
                [p.failure for p in result.points if p.failure is not None],
            )
        )  # fmt: skip
    return rows


NATIVE_COMPARISONS = (
    ("native: RF1 ring-aware / proxied", "RF1 proxied (all via node 0)",
     "RF1 ring-aware (each to its owner)"),
    ("native: 3 nodes (RF3 ring-aware) / 1 node", "1 node", "3 nodes RF3 ring-aware"),
    ("native unloaded: RF1 ring-aware / proxied", "RF1 proxied, one at a time",
     "RF1 ring-aware, one at a time"),
)  # fmt: skip


def native_comparisons(rows: Sequence[NativeRow]) -> list[dict[str, object]]:
    by_label = {r.label: r for r in rows}
    found: list[dict[str, object]] = []
    for label, base, other in NATIVE_COMPARISONS:
        a, b = by_label.get(base), by_label.get(other)
        if a is None or b is None or not a.rounds or not b.rounds:
            continue
        found.append({
            "label": label,
            "ops_ratio": b.req_per_s / a.req_per_s if a.req_per_s else None,
            "p50_ratio": b.p50_ms / a.p50_ms if a.p50_ms else None,
            "p99_ratio": b.p99_ms / a.p99_ms if a.p99_ms else None,
            "cpu_ratio": b.cpu_ms_per_op / a.cpu_ms_per_op
            if a.cpu_ms_per_op and b.cpu_ms_per_op is not None else None,
        })  # fmt: skip
    return found
