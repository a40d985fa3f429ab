"""``supernode status``: what etcd says about the cluster, for an operator.

The report is built by a pure function (:func:`build_report`) from what was read
(:class:`ClusterRead`, values still undecoded), so every state it shows is tested without
etcd; :func:`read_cluster` is the only I/O. Values another program wrote wrongly do not
abort the report: they are listed under ``problems``, since an operator runs ``status``
precisely when something looks wrong.

Each endpoint is asked on its own connection, so the report says which endpoints answered
and why the others did not; the cluster is then read through the first that answered.

``--json`` prints one object with these stable keys::

    {
      "prefix": "/supernode",
      "etcd": {
        "endpoint": "127.0.0.1:2379",          # the endpoint the report was read from
        "revision": 42,                         # etcd's store revision at that read
        "endpoints": [{"endpoint": "...", "reachable": true, "error": null}, ...]
      },
      "placement": {"epoch": 3, "partitions": 1024, "replication_factor": 3,
                    "moving": 32} | null,      # partitions moving between nodes now
      "controller": "127.0.0.1:7701" | null,   # the elected controller's node name
      "nodes": [                                # sorted by name
        {
          "name": "127.0.0.1:7701",
          "state": "up" | "down",               # up: its /members key (lease) is present
          "registered": true,                   # listed under /nodes
          "address": "127.0.0.1:7701",
          "zone": "", "version": "0.1.0",       # version "" while down
          "mirror_revision": 40 | null,         # null while down
          "lag": 2 | null,                      # revision - mirror_revision, null while down
          "partitions_owned": 342,              # owner position in the placement
          "partitions_held": 1024,              # any position (where reads go)
          "partitions_incoming": 12,            # moving to it, not yet flipped
          "membership": "active"                # /nodes state: "active", "leaving"
        }, ...                                  # (decommissioned), "left"; null if absent
      ],
      "problems": ["..."]                       # values that could not be decoded
    }

``lag`` counts the revisions etcd has advanced since the member last reported how far its
mirror had applied; a member reports it when it rewrites its member key, and that write is
itself a revision, so a healthy member shows a small lag rather than zero.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from supernode.cluster.etcd import Entry, EtcdClient, EtcdConfig, EtcdError, EtcdUnavailable
from supernode.cluster.keys import Keys, LayoutError, MemberInfo, NodeInfo
from supernode.cluster.placement import Placement, PlacementError
from supernode.config import ClusterSettings
from supernode.tls import NodeTls

# A status read must answer fast; one attempt or connect never takes the whole budget.
_ATTEMPT_TIMEOUT_S = 1.0
_CONNECT_TIMEOUT_S = 0.5

T = TypeVar("T")


class StatusError(Exception):
    """etcd could not be read; the message is the one line ``status`` prints."""


@dataclass(frozen=True)
class EndpointProbe:
    """Whether one etcd endpoint answered, and if not, why."""

    endpoint: str
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ClusterRead:
    """What ``status`` read from etcd, undecoded: values by node name."""

    endpoint: str
    revision: int
    nodes: Mapping[str, bytes]
    members: Mapping[str, bytes]
    placement: bytes | None = None
    controller: bytes | None = None


@dataclass(frozen=True)
class NodeStatus:
    name: str
    up: bool
    registered: bool
    address: str
    zone: str
    version: str
    mirror_revision: int | None
    lag: int | None
    partitions_owned: int
    partitions_held: int
    partitions_incoming: int = 0
    membership: str | None = None

    @property
    def state(self) -> str:
        return "up" if self.up else "down"


@dataclass(frozen=True)
class PlacementSummary:
    epoch: int
    partitions: int
    replication_factor: int
    moving: int = 0


@dataclass(frozen=True)
class StatusReport:
    prefix: str
    endpoint: str
    revision: int
    endpoints: tuple[EndpointProbe, ...]
    placement: PlacementSummary | None
    controller: str | None
    nodes: tuple[NodeStatus, ...]
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object (keys documented in the module docstring)."""
        return {
            "prefix": self.prefix,
            "etcd": {
                "endpoint": self.endpoint,
                "revision": self.revision,
                "endpoints": [
                    {"endpoint": p.endpoint, "reachable": p.reachable, "error": p.error}
                    for p in self.endpoints
                ],
            },
            "placement": None
            if self.placement is None
            else {
                "epoch": self.placement.epoch,
                "partitions": self.placement.partitions,
                "replication_factor": self.placement.replication_factor,
                "moving": self.placement.moving,
            },
            "controller": self.controller,
            "nodes": [
                {
                    "name": n.name,
                    "state": n.state,
                    "registered": n.registered,
                    "address": n.address,
                    "zone": n.zone,
                    "version": n.version,
                    "mirror_revision": n.mirror_revision,
                    "lag": n.lag,
                    "partitions_owned": n.partitions_owned,
                    "partitions_held": n.partitions_held,
                    "partitions_incoming": n.partitions_incoming,
                    "membership": n.membership,
                }
                for n in self.nodes
            ],
            "problems": list(self.problems),
        }


# --------------------------------------------------------------------------- pure core


def build_report(
    read: ClusterRead, prefix: str, probes: Sequence[EndpointProbe] = ()
) -> StatusReport:
    """The report for one read of etcd.

    Nodes are the union of ``/nodes``, ``/members`` and the placement's nodes: a member not
    (yet) under ``/nodes`` and a node that left ``/nodes`` while still holding partitions
    are exactly what an operator needs to see.
    """
    problems: list[str] = []
    nodes = _decoded(read.nodes, NodeInfo.from_bytes, "/nodes/", problems)
    members = _decoded(read.members, MemberInfo.from_bytes, "/members/", problems)
    placement: Placement | None = None
    if read.placement is not None:
        try:
            placement = Placement.from_bytes(read.placement)
        except PlacementError as exc:
            problems.append(f"/placement: {exc}")
    owned: Counter[str] = Counter()
    held: Counter[str] = Counter()
    incoming: Counter[str] = Counter()
    if placement is not None:
        for replicas in placement.replicas:
            owned[replicas[0]] += 1
            held.update(replicas)
        for p in placement.moves:
            incoming.update(placement.incoming(p))
    names = sorted(set(read.nodes) | set(read.members) | set(held) | set(incoming))
    statuses = tuple(
        _node_status(
            name,
            nodes.get(name),
            members.get(name),
            up=name in read.members,
            registered=name in read.nodes,
            revision=read.revision,
            owned=owned[name],
            held=held[name],
            incoming=incoming[name],
        )
        for name in names
    )
    summary = (
        None
        if placement is None
        else PlacementSummary(
            placement.epoch,
            placement.partitions,
            placement.replication_factor,
            len(placement.moves),
        )
    )
    return StatusReport(
        prefix=prefix,
        endpoint=read.endpoint,
        revision=read.revision,
        endpoints=tuple(probes),
        placement=summary,
        controller=None if read.controller is None else read.controller.decode(errors="replace"),
        nodes=statuses,
        problems=tuple(problems),
    )


def _decoded(
    values: Mapping[str, bytes],
    decode: Callable[[bytes], T],
    where: str,
    problems: list[str],
) -> dict[str, T]:
    """Every value that decodes; the others are noted in ``problems`` (the node still shows,
    as known from its other keys)."""
    decoded: dict[str, T] = {}
    for name, raw in values.items():
        try:
            decoded[name] = decode(raw)
        except LayoutError as exc:
            problems.append(f"{where}{name}: {exc}")
    return decoded


def _node_status(
    name: str,
    node: NodeInfo | None,
    member: MemberInfo | None,
    *,
    up: bool,
    registered: bool,
    revision: int,
    owned: int,
    held: int,
    incoming: int,
) -> NodeStatus:
    """One node's row. Up means its member key is present, even if its value is garbage
    (the key lives under the node's lease; the value only describes it)."""
    return NodeStatus(
        name=name,
        up=up,
        registered=registered,
        address=(member or node or _NO_INFO).address,
        zone=member.zone if member is not None else (node or _NO_INFO).zone,
        version=member.version if member is not None else "",
        mirror_revision=None if member is None else member.mirror_revision,
        lag=None if member is None else max(0, revision - member.mirror_revision),
        partitions_owned=owned,
        partitions_held=held,
        partitions_incoming=incoming,
        membership=None if node is None else node.state,
    )


_NO_INFO = NodeInfo(address="")


def render_table(report: StatusReport) -> str:
    """The human output: a header line, unreachable endpoints, an aligned node table."""
    placement = (
        "no placement yet"
        if report.placement is None
        else f"placement epoch {report.placement.epoch} ({report.placement.partitions} "
        f"partitions, RF {report.placement.replication_factor}, "
        f"{report.placement.moving} moving)"
    )
    up = sum(node.up for node in report.nodes)
    header = (
        f"etcd {report.endpoint} ok at revision {report.revision} | prefix {report.prefix} | "
        f"{len(report.nodes)} nodes, {up} up | {placement} | "
        f"controller {report.controller or 'none'}"
    )
    lines = [header]
    lines += [
        f"etcd {probe.endpoint} unreachable: {probe.error}"
        for probe in report.endpoints
        if not probe.reachable
    ]
    rows = [("NODE", "STATE", "ADDRESS", "ZONE", "VERSION", "MIRROR", "LAG", "OWNED", "HELD", "IN")]
    for node in report.nodes:
        state = node.state if node.registered else f"{node.state} (not in /nodes)"
        if node.membership not in (None, "active"):
            state = f"{state}, {node.membership}"
        rows.append(
            (
                node.name,
                state,
                node.address or "-",
                node.zone or "-",
                node.version or "-",
                _or_dash(node.mirror_revision),
                _or_dash(node.lag),
                str(node.partitions_owned),
                str(node.partitions_held),
                str(node.partitions_incoming),
            )
        )
    if report.nodes:
        widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    else:
        lines.append("no nodes")
    lines += [f"problem: {problem}" for problem in report.problems]
    return "\n".join(lines) + "\n"


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


# --------------------------------------------------------------------------- I/O


async def read_cluster(
    settings: ClusterSettings, tls: NodeTls | None = None
) -> tuple[ClusterRead, list[EndpointProbe]]:
    """Ask every endpoint (concurrently, each on its own connection), then read the cluster
    through the first one, in the given order, that answered.

    Raises :class:`StatusError` when no endpoint answered or the read failed midway.
    """
    endpoints = settings.endpoints
    if not endpoints:
        raise StatusError(
            "no etcd endpoints: pass --etcd-endpoints H:P[,H:P] "
            "or set SUPERNODE_CLUSTER_ETCD_ENDPOINTS"
        )
    keys = Keys(settings.etcd_prefix)
    try:
        configs = [
            _etcd_config(endpoint, settings.etcd_timeout_seconds, tls) for endpoint in endpoints
        ]
    except ValueError as exc:
        raise StatusError(str(exc)) from exc
    clients = [EtcdClient(config) for config in configs]
    try:
        errors = await asyncio.gather(*(_probe(client, keys) for client in clients))
        probes = [EndpointProbe(e, error) for e, error in zip(endpoints, errors, strict=True)]
        answered = [(p.endpoint, c) for p, c in zip(probes, clients, strict=True) if p.reachable]
        if not answered:
            tried = "; ".join(f"{probe.endpoint}: {probe.error}" for probe in probes)
            raise StatusError(f"etcd unreachable ({tried})")
        endpoint, client = answered[0]
        try:
            read = await _read(client, keys, endpoint)
        except EtcdError as exc:
            raise StatusError(f"etcd {endpoint} failed while being read: {_one_line(exc)}") from exc
    finally:
        for client in clients:
            await client.close()
    return read, probes


def _etcd_config(endpoint: str, timeout_s: float, tls: NodeTls | None) -> EtcdConfig:
    return EtcdConfig(
        (endpoint,),
        tls=tls,
        call_timeout_s=timeout_s,
        attempt_timeout_s=min(_ATTEMPT_TIMEOUT_S, timeout_s),
        connect_timeout_s=min(_CONNECT_TIMEOUT_S, timeout_s),
    )


async def _probe(client: EtcdClient, keys: Keys) -> str | None:
    """None if the endpoint served a linearizable read, else why not (one line)."""
    try:
        await client.get(keys.controller)
    except EtcdUnavailable as exc:
        reasons = "; ".join(exc.failures.values()) or str(exc)
        return _one_line(reasons)
    except EtcdError as exc:
        return _one_line(exc)
    return None


async def _read(client: EtcdClient, keys: Keys, endpoint: str) -> ClusterRead:
    # Members last: lag is measured against the newest revision the read saw.
    nodes = await client.get_prefix(keys.nodes)
    placement = await client.get(keys.placement)
    controller = await client.get(keys.controller)
    members = await client.get_prefix(keys.members)
    return ClusterRead(
        endpoint=endpoint,
        revision=max(nodes.revision, members.revision),
        nodes=_by_name(nodes.entries, keys, keys.nodes),
        members=_by_name(members.entries, keys, keys.members),
        placement=None if placement is None else placement.value,
        controller=None if controller is None else controller.value,
    )


def _by_name(entries: Sequence[Entry], keys: Keys, collection: bytes) -> dict[str, bytes]:
    by_name = {}
    for entry in entries:
        name = keys.name_under(entry.key, collection)
        if name is not None:
            by_name[name] = entry.value
    return by_name


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split())


def run_status(
    settings: ClusterSettings,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    tls: NodeTls | None = None,
) -> int:
    """``supernode status``: print the report; 1 with a one-line reason when etcd cannot be
    read. ``tls``: a certificate etcd accepts (it runs with mutual TLS)."""
    try:
        read, probes = asyncio.run(read_cluster(settings, tls))
    except StatusError as exc:
        print(f"supernode status: {_one_line(exc)}", file=err)
        return 1
    report = build_report(read, settings.etcd_prefix, probes)
    if as_json:
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.write(render_table(report))
    return 0
