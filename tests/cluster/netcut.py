"""A real network cut between the supernode processes of a loopback cluster.

Every node keeps listening and advertising ``127.0.0.1:P`` (its name in placement and in
device records is unchanged); what tells the kernel whose packet it is, is the **group id**
each node process runs under (its "network identity", see :meth:`NetCut.python_of`). Two
iptables chains in the root namespace, installed before the first node starts, do the rest:

- ``mangle OUTPUT``: every new TCP connection a node's process opens gets the node's mark
  as its conntrack mark (``-m owner --gid-owner G -j CONNMARK``); the connection keeps it,
  in both directions, for its whole life.
- ``filter OUTPUT``: while nodes *a* and *b* are cut, the packets of connections marked *a*
  to or from *b*'s port (and the same with *a* and *b* swapped) are dropped (mode ``drop``:
  a lost network; new connections time out, established ones stall and resume on heal) or
  refused with a TCP reset (mode ``reset``: new connections are refused, and the
  established ones are closed at once with ``ss -K``, so both ends see a reset).

Loopback packets pass OUTPUT once per direction, on the sending side, which is where the
socket owner is known. The test process (and anything else unmarked: etcd, other runs)
reaches every node throughout; a node keeps reaching etcd unless it is cut from etcd as
well (``cut(i, etcd=True)`` or ``cut_etcd(i)``: its connections to etcd's client ports).
Only IPv4 is cut (iptables, not ip6tables): the cluster's addresses are ``127.0.0.1``, and
gRPC's IPv4-mapped IPv6 sockets still put IPv4 packets on the wire.

Why not user-space proxies on advertised ports: a proxy cannot tell which node dialled it
(gRPC has no option for a client's source address, grpc/grpc#17284), it acknowledges the
bytes itself so a "lost" network still accepts writes, and advertise != listen renames the
nodes. Why not one namespace per node: nodes would have to bind non-loopback addresses and
reach an etcd and a test process outside their namespace; this is the same kernel
machinery (netfilter and conntrack) without moving anything.

Use::

    async with cuttable_cluster(tmp_path, 3, "--cluster-replication-factor", "1") as net:
        cluster = net.cluster                      # tests/cluster/harness.py's Cluster
        net.cut(2)                                 # node 2 <-/-> nodes 0 and 1 (drop mode)
        probe = await net.probe(0)                 # a process with node 0's identity
        assert await probe.connect(cluster.target(2)) == "timeout"
        net.heal(2)

The probe program itself is this module run as ``python -m tests.cluster.netcut`` under
a node's identity (see :class:`Probe`). Cleanup (chains, probes, wrapper scripts) happens
on exit of the context managers, at interpreter exit, and, for a run that was killed, in
the next run's sweep of chains whose owner is gone.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cluster.harness import Cluster, running_cluster
from tests.nat.lab import REPO_ROOT, STALE_AFTER_SECONDS, LabError, _process_start_time, _sh
from tests.nat.requirements import LabUnavailable, ensure_tools, tool

CutMode = Literal["drop", "reset"]
Pair = frozenset[int]

PREFIX = "sncut"
MAX_NODES = 64
TABLES = ("mangle", "filter")
PROBE_LIFETIME = 300.0  # a probe exits by itself after this long, whatever its parent does
PROBE_ANSWER_GRACE = 15.0  # beyond a request's own timeout, before a probe counts as hung

_COMMENT = re.compile(
    rf'-A OUTPUT -m comment --comment "?{PREFIX} owner=(\d+):(\d+) created=(\d+)"? '
    rf"-j ({PREFIX}-[0-9-]+)$"
)
_slots = itertools.count()
_open: weakref.WeakSet[NetCut] = weakref.WeakSet()


class NetCutError(LabError):
    """A cut could not be made or undone; the message says which command and why."""


# identities and rules: pure ----------------------------------------------------------------


def node_gid(pid: int, slot: int, index: int) -> int:
    """The group id (and conntrack mark) of node ``index`` of a run.

    Unique among live runs on the machine (``pid`` < 2**22 is Linux's ceiling), among the
    four latest NetCuts of one process (``slot``), and below 2**31 (a valid gid and mark).
    """
    if not 0 <= index < MAX_NODES:
        raise ValueError(f"node index {index}: at most {MAX_NODES} nodes")
    return 0x4000_0000 | (pid << 8) | ((slot % 4) << 6) | index


def comment(pid: int, start: int | None, created: int) -> str:
    """Who owns a jump rule, so that a later run can tell a crashed run's rules."""
    return f"{PREFIX} owner={pid}:{start or 0} created={created}"


def install_script(chain: str, owner: str, gids: Sequence[int]) -> str:
    """iptables-restore input creating both chains (empty filter) and their jumps at once."""
    jump = f'-I OUTPUT -m comment --comment "{owner}" -j {chain}'
    marks = [
        f"-A {chain} -p tcp -m conntrack --ctstate NEW -m owner --gid-owner {gid} "
        f"-j CONNMARK --set-mark {gid}"
        for gid in gids
    ]
    return (
        f"*mangle\n:{chain} - [0:0]\n"
        + "".join(f"{rule}\n" for rule in marks)
        + f"{jump}\nCOMMIT\n"
        f"*filter\n:{chain} - [0:0]\n{jump}\nCOMMIT\n"
    )


def remove_script(chain: str, owner: str, tables: Iterable[str] = TABLES) -> str:
    """iptables-restore input deleting the jumps and the chains of ``install_script``."""
    return "".join(
        f'*{table}\n-D OUTPUT -m comment --comment "{owner}" -j {chain}\n'
        f"-F {chain}\n-X {chain}\nCOMMIT\n"
        for table in tables
    )


def _checked(mode: CutMode | None, default: CutMode = "drop") -> CutMode:
    mode = mode or default
    if mode not in ("drop", "reset"):
        raise ValueError(f"cut mode {mode!r}: 'drop' or 'reset'")
    return mode


def _action(mode: CutMode) -> str:
    # A reset's own RST (and ss -K's) must pass, or neither end would hear of the cut.
    if mode == "reset":
        return "! --tcp-flags RST RST -j REJECT --reject-with tcp-reset"
    return "-j DROP"


def cut_rules(
    chain: str,
    pairs: Mapping[Pair, CutMode],
    etcd_cuts: Mapping[int, CutMode],
    gids: Sequence[int],
    ports: Sequence[int],
    etcd_ports: Sequence[int],
) -> str:
    """iptables-restore input replacing the filter chain's rules with these cuts.

    A connection opened by node *a* carries *a*'s mark; its packets to *b*'s port and *b*'s
    answers from it are the ones dropped. Both directions of both nodes' connections.
    """
    lines = []
    for pair, mode in sorted(pairs.items(), key=lambda item: sorted(item[0])):
        a, b = sorted(pair)
        for origin, target in ((a, b), (b, a)):
            for side in ("--dport", "--sport"):
                lines.append(
                    f"-A {chain} -p tcp -m connmark --mark {gids[origin]} "
                    f"-m tcp {side} {ports[target]} {_action(mode)}"
                )
    for node, mode in sorted(etcd_cuts.items()):
        for port in etcd_ports:
            for side in ("--dport", "--sport"):
                lines.append(
                    f"-A {chain} -p tcp -m connmark --mark {gids[node]} "
                    f"-m tcp {side} {port} {_action(mode)}"
                )
    return f"*filter\n:{chain} - [0:0]\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"


@dataclass(frozen=True)
class StaleChain:
    table: str
    chain: str
    owner: str


def stale_chains(
    table: str, rules: str, now: float, alive: Callable[[int, int], bool]
) -> list[StaleChain]:
    """Chains of runs whose owner is gone and that are older than any test runs.

    ``rules`` is ``iptables -t TABLE -S OUTPUT``; ``alive(pid, start)`` says whether that
    process still runs. A run in another PID namespace sharing this network namespace
    looks dead to us, hence the age condition (as for the NAT lab's namespaces).
    """
    found = []
    for line in rules.splitlines():
        match = _COMMENT.match(line.strip())
        if match is None:
            continue
        pid, start, created, chain = (*map(int, match.groups()[:3]), match.group(4))
        if not alive(pid, start) and now - created > STALE_AFTER_SECONDS:
            found.append(StaleChain(table, chain, comment(pid, start, created)))
    return found


# established connections: reading /proc -----------------------------------------------------

_ESTABLISHED = "01"


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    inode: int
    unacked: int  # bytes written and not yet acknowledged by the other end


def parse_tcp_table(text: str) -> list[TcpSocket]:
    """Established sockets of ``/proc/net/tcp`` or ``tcp6`` (IPv4-mapped ones included)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _ESTABLISHED:
            continue
        local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
        unacked = int(fields[4].split(":")[0], 16)
        found.append(TcpSocket(int(local, 16), int(remote, 16), int(fields[9]), unacked))
    return found


def _fs_gid(pid: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Gid:"):
            return int(line.split()[4])  # real, effective, saved, filesystem: xt_owner's
    return None


def socket_inodes(gid: int) -> set[int]:
    """Inodes of the sockets every process running under ``gid`` holds."""
    inodes: set[int] = set()
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        if _fs_gid(pid) != gid:
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(int(link[8:-1]))
    return inodes


def established() -> list[TcpSocket]:
    text = "".join(Path(f"/proc/net/{name}").read_text() for name in ("tcp", "tcp6"))
    return parse_tcp_table(text)


# the cut -------------------------------------------------------------------------------------


class NetCut:
    """The chains and node identities of one cluster; ``async with NetCut(3) as net``.

    Open it before the nodes start (their first connections must be marked), start them
    with :meth:`python_of`, then :meth:`attach` the cluster. ``mode`` is the default of
    every cut; one cut may say otherwise.
    """

    def __init__(self, nodes: int, *, mode: CutMode = "drop") -> None:
        self.mode = _checked(mode)
        pid = os.getpid()
        slot = next(_slots)
        self.chain = f"{PREFIX}-{pid}-{slot}"
        self.owner = comment(pid, _process_start_time(pid), int(time.time()))
        self.gids = [node_gid(pid, slot, index) for index in range(nodes)]
        self.pairs: dict[Pair, CutMode] = {}
        self.etcd_cuts: dict[int, CutMode] = {}
        self._cluster: Cluster | None = None
        self._scripts = Path(tempfile.mkdtemp(prefix=f"{self.chain}-"))
        self._probes: dict[int, Probe] = {}
        self._installed = False
        _open.add(self)  # from here on, interpreter exit removes what exists

    # lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> NetCut:
        try:
            ensure_tools()
            sweep_stale_chains()
            self._installed = True  # from here on, removal is attempted whatever happens
            self._restore(install_script(self.chain, self.owner, self.gids))
            for index, gid in enumerate(self.gids):
                self._write_wrapper(index, gid)
        except BaseException as error:
            with contextlib.suppress(NetCutError):
                self.remove_rules()
            if isinstance(error, LabUnavailable):
                raise NetCutError(f"network cuts need root and iptables: {error}") from error
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the probes, remove the chains and the wrappers. Raises if a rule stayed."""
        for probe in self._probes.values():
            await probe.close()
        self._probes.clear()
        self.remove_rules()

    def remove_rules(self) -> None:
        """The synchronous part of closing (also run at interpreter exit). Idempotent."""
        _open.discard(self)
        shutil.rmtree(self._scripts, ignore_errors=True)
        if not self._installed:
            return
        self._installed = False
        failures = []
        for table in TABLES:  # one by one: a table that lost its chain must not keep the other
            try:
                self._restore(remove_script(self.chain, self.owner, (table,)))
            except NetCutError as error:
                failures.append(str(error))
        if failures:
            raise NetCutError(f"{self.chain} not fully removed:\n" + "\n".join(failures))

    # identities --------------------------------------------------------------------------

    def _wrapper(self, index: int) -> Path:
        return self._scripts / f"python-node{index}"

    def _write_wrapper(self, index: int, gid: int) -> None:
        """An interpreter that drops to node ``index``'s group, then execs this Python.

        Sockets are tagged with their creator's credentials, so everything the node (or a
        probe with its identity) opens is its own, however gRPC makes its sockets.
        """
        path = self._wrapper(index)
        path.write_text(
            f"#!{sys.executable}\n"
            "import os, sys\n"
            "os.setgroups([])\n"
            f"os.setregid({gid}, {gid})\n"
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
        )
        path.chmod(0o755)

    def python_of(self, index: int) -> str:
        """The interpreter to start node ``index`` with (``running_cluster(python_of=)``)."""
        return str(self._wrapper(index))

    def attach(self, cluster: Cluster) -> None:
        """The cluster whose ports the cuts name (they stay the same across restarts)."""
        if len(cluster.ports) != len(self.gids):
            raise ValueError(f"{len(cluster.ports)} nodes, identities for {len(self.gids)}")
        for index, node in enumerate(cluster.nodes):  # a node started otherwise is uncuttable
            process = None if node is None else node.process
            if process is not None and _fs_gid(str(process.pid)) != self.gids[index]:
                raise NetCutError(f"node {index} was not started with python_of({index})")
        self._cluster = cluster

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise NetCutError("no cluster attached: call attach(cluster) first")
        return self._cluster

    def etcd_ports(self) -> list[int]:
        return [int(endpoint.rsplit(":", 1)[1]) for endpoint in self.cluster.etcd.client_endpoints]

    # cutting -----------------------------------------------------------------------------

    def cut(self, index: int, *, mode: CutMode | None = None, etcd: bool = False) -> None:
        """Isolate node ``index`` from every other node, both ways, new and established
        connections; clients still reach it, and it still reaches etcd unless ``etcd``."""
        mode = _checked(mode, self.mode)
        for other in range(len(self.gids)):
            if other != index:
                self.pairs[frozenset((index, other))] = mode
        if etcd:
            self.etcd_cuts[index] = mode
        self._apply()

    def cut_pair(self, a: int, b: int, *, mode: CutMode | None = None) -> None:
        """Only nodes ``a`` and ``b`` lose each other; both still reach everyone else."""
        if a == b:
            raise ValueError("a node cannot be cut from itself")
        self.pairs[frozenset((a, b))] = _checked(mode, self.mode)
        self._apply()

    def heal(self, index: int) -> None:
        """Undo every cut involving node ``index`` (its pairs and its etcd cut)."""
        self.pairs = {pair: mode for pair, mode in self.pairs.items() if index not in pair}
        self.etcd_cuts.pop(index, None)
        self._apply()

    def cut_etcd(self, index: int, *, mode: CutMode | None = None) -> None:
        """Only node ``index`` loses etcd (every member's client port); peers stay."""
        self.etcd_cuts[index] = _checked(mode, self.mode)
        self._apply()

    def heal_pair(self, a: int, b: int) -> None:
        self.pairs.pop(frozenset((a, b)), None)
        self._apply()

    def heal_etcd(self, index: int) -> None:
        self.etcd_cuts.pop(index, None)
        self._apply()

    def heal_all(self) -> None:
        self.pairs.clear()
        self.etcd_cuts.clear()
        self._apply()

    def _apply(self) -> None:
        cluster = self.cluster
        self._restore(
            cut_rules(
                self.chain, self.pairs, self.etcd_cuts, self.gids, cluster.ports, self.etcd_ports()
            )
        )
        self._reset_established()

    def _dialled(self, node: int, ports: set[int], table: list[TcpSocket]) -> list[TcpSocket]:
        """Established sockets that processes with ``node``'s identity opened to ``ports``."""
        inodes = socket_inodes(self.gids[node])
        return [s for s in table if s.inode in inodes and s.remote_port in ports]

    def _doomed(self) -> list[TcpSocket]:
        """Established sockets a reset-mode cut forbids: node sockets dialled to the other
        side's port (each connection's other end is found by its ports)."""
        ports = self.cluster.ports
        wanted: dict[int, set[int]] = {}  # origin node -> ports it must not be connected to
        for pair, mode in self.pairs.items():
            if mode == "reset":
                a, b = sorted(pair)
                wanted.setdefault(a, set()).add(ports[b])
                wanted.setdefault(b, set()).add(ports[a])
        for node, mode in self.etcd_cuts.items():
            if mode == "reset":
                wanted.setdefault(node, set()).update(self.etcd_ports())
        if not wanted:
            return []
        table = established()
        return [s for node, targets in wanted.items() for s in self._dialled(node, targets, table)]

    def quiet(self, a: int, b: int) -> bool:
        """Whether no byte between nodes ``a`` and ``b`` (and processes with their
        identities) waits for its acknowledgement: what either sends next is the first
        thing a cut made now must hold back, whatever TCP's timers were doing."""
        table, ports = established(), self.cluster.ports
        dialled = self._dialled(a, {ports[b]}, table) + self._dialled(b, {ports[a]}, table)
        ends = {(s.local_port, s.remote_port) for s in dialled}
        ends |= {(remote, local) for local, remote in ends}
        return all(s.unacked == 0 for s in table if (s.local_port, s.remote_port) in ends)

    def _reset_established(self) -> None:
        doomed = self._doomed()
        if not doomed:
            return
        both_ends = " or ".join(
            f"( sport = :{s.local_port} and dport = :{s.remote_port} ) or "
            f"( sport = :{s.remote_port} and dport = :{s.local_port} )"
            for s in doomed
        )
        _sh([tool("ss"), "-K", "-t", "-n", "state", "established", both_ends])
        left = {s.inode for s in self._doomed()} & {s.inode for s in doomed}
        if left:
            raise NetCutError(
                f"ss -K left {len(left)} connection(s) open: the kernel needs "
                "CONFIG_INET_DIAG_DESTROY for mode='reset'"
            )

    def _restore(self, script: str) -> None:
        try:
            _sh([tool("iptables-restore"), "-w", "--noflush"], stdin=script)
        except LabError as error:
            raise NetCutError(f"{error}\ninput was:\n{script}") from error

    # probes ------------------------------------------------------------------------------

    async def probe(self, index: int) -> Probe:
        """A process with node ``index``'s network identity (started once, kept)."""
        probe = self._probes.get(index)
        if probe is None:
            probe = self._probes[index] = await Probe.start(self.python_of(index), self.gids[index])
        return probe


def sweep_stale_chains(now: float | None = None) -> list[StaleChain]:
    """Remove the chains of crashed runs (owner gone, older than STALE_AFTER_SECONDS)."""
    now = time.time() if now is None else now
    swept = []
    for table in TABLES:
        rules = _sh([tool("iptables"), "-w", "-t", table, "-S", "OUTPUT"])
        for stale in stale_chains(table, rules, now, _alive):
            with contextlib.suppress(LabError):
                _sh(
                    [tool("iptables-restore"), "-w", "--noflush"],
                    stdin=remove_script(stale.chain, stale.owner, (table,)),
                )
                swept.append(stale)
    return swept


def _alive(pid: int, start: int) -> bool:
    return _process_start_time(pid) == start


@atexit.register
def _remove_all_rules() -> None:
    for net in list(_open):
        with contextlib.suppress(Exception):
            net.remove_rules()


@contextlib.asynccontextmanager
async def cuttable_cluster(
    root: Path, nodes: int = 3, *extra: str, mode: CutMode = "drop", etcd_members: int = 1
) -> AsyncIterator[NetCut]:
    """``running_cluster`` whose nodes can be cut apart; the cluster is ``net.cluster``.

    The nodes die before the rules go, so no connection of theirs outlives the cut.
    """
    async with (
        NetCut(nodes, mode=mode) as net,
        running_cluster(
            root, nodes, *extra, etcd_members=etcd_members, python_of=net.python_of
        ) as cluster,
    ):
        net.attach(cluster)
        yield net


# probes --------------------------------------------------------------------------------------


class Probe:
    """One process with a node's network identity, answering JSON requests line by line.

    It holds at most one gRPC channel with one open health Watch stream, so a test can see
    what a cut does to a connection established before it: a ``drop`` stalls it (a call
    on it times out, the stream stays open and resumes after the heal), a ``reset`` ends it.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, python: str, gid: int) -> Probe:
        process = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "tests.cluster.netcut",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        )
        probe = cls(process)
        hello = await probe.ask("hello", seconds=0.0)
        if hello["gid"] != gid:  # the wrapper did not give it the identity: no cut would hold
            await probe.close()
            raise NetCutError(f"probe runs as group {hello['gid']}, not {gid}")
        return probe

    async def ask(self, op: str, *, seconds: float, **fields: Any) -> dict[str, Any]:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"op": op, "seconds": seconds, **fields}).encode() + b"\n")
        await process.stdin.drain()
        async with asyncio.timeout(seconds + PROBE_ANSWER_GRACE):
            line = await process.stdout.readline()
        if not line:
            raise NetCutError(f"probe exited ({process.returncode}) during {op!r}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise NetCutError(f"probe {op!r}: {answer['error']}")
        return answer

    async def connect(self, target: str, seconds: float = 1.0) -> str:
        """Open (and close) one TCP connection: ``connected``, ``refused``, ``timeout`` (or
        ``error: ...`` for anything else)."""
        return str((await self.ask("connect", to=target, seconds=seconds))["outcome"])

    async def open_stream(self, target: str, service: str = "", seconds: float = 10.0) -> None:
        """A channel to ``target`` with a health Watch stream on ``service`` ("": the
        server as a whole) that got its first answer."""
        await self.ask("open", target=target, service=service, seconds=seconds)

    async def check(self, seconds: float) -> str:
        """A health Check on the open channel: ``OK`` or the gRPC status code's name."""
        return str((await self.ask("check", seconds=seconds))["code"])

    async def stream_end(self, within: float) -> str | None:
        """The Watch stream's final status code if it ended within ``within`` s, else None."""
        answer = await self.ask("stream", seconds=within)
        return None if answer["code"] is None else str(answer["code"])

    async def statuses(self) -> list[str]:
        """Every serving status the Watch stream delivered so far, oldest first."""
        return [str(status) for status in (await self.ask("stream", seconds=0))["statuses"]]

    async def close(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._process.wait()


class _ProbeProgram:
    """The probe's side: plain sockets and synchronous gRPC, one request at a time."""

    def __init__(self) -> None:
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._first = threading.Event()
        self._ended = threading.Event()
        self._end_code: str | None = None
        self._statuses: list[str] = []

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op, seconds = request["op"], float(request["seconds"])
        if op == "hello":
            return {"pid": os.getpid(), "gid": os.getgid()}
        if op == "connect":
            return {"outcome": self._connect(str(request["to"]), seconds)}
        if op == "open":
            return self._open(str(request["target"]), str(request["service"]), seconds)
        if self._stub is None:
            return {"error": f"{op!r} needs an open stream first"}
        if op == "check":
            return {"code": self._check(seconds)}
        if op == "stream":
            self._ended.wait(seconds)
            code = self._end_code if self._ended.is_set() else None
            return {"code": code, "statuses": list(self._statuses)}
        return {"error": f"unknown op {op!r}"}

    def _connect(self, target: str, seconds: float) -> str:
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=seconds):
                return "connected"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error: {exc}"

    def _open(self, target: str, service: str, seconds: float) -> dict[str, Any]:
        if self._channel is not None:
            return {"error": "a stream is open already"}
        # Quick reconnects after a heal; no keepalive of its own, so a drop only stalls it.
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500),
            ],
        )
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        stream = self._stub.Watch(health_pb2.HealthCheckRequest(service=service))
        threading.Thread(target=self._follow, args=(stream,), daemon=True).start()
        if not self._first.wait(seconds):
            return {"error": f"no first Watch answer from {target} in {seconds} s"}
        if self._ended.is_set():
            return {"error": f"Watch on {target} ended: {self._end_code}"}
        return {"open": True}

    def _follow(self, stream: Iterator[Any]) -> None:
        try:
            for response in stream:
                self._statuses.append(
                    health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                )
                self._first.set()
            self._end_code = "OK"
        except grpc.RpcError as exc:
            self._end_code = exc.code().name
        finally:
            self._ended.set()
            self._first.set()

    def _check(self, seconds: float) -> str:
        try:
            self._stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=seconds)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"


def _run_probe(lines: TextIO, out: TextIO) -> None:
    threading.Timer(PROBE_LIFETIME, os._exit, args=(3,)).start()  # bounded even if orphaned
    program = _ProbeProgram()
    for line in lines:  # ends with stdin: the test process closed it or died
        out.write(json.dumps(program.handle(json.loads(line))) + "\n")
        out.flush()
    os._exit(0)


if __name__ == "__main__":
    _run_probe(sys.stdin, sys.stdout)
