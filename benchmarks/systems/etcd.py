"""etcd as a lookup baseline: the same value bytes under the same keys, read over etcd's gRPC.

A single-member etcd (Debian's 3.4) on our own loopback ports and temporary data directory.
The clients use raw ``grpc.aio`` stubs generated from etcd's own API protos (shipped,
already generated, inside the ``aetcd`` package), not a client library, so per-request client
overhead matches our own supernode client's and the comparison measures the servers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import grpc
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from benchmarks.dataset import Dataset
from benchmarks.native import GRPC_GO_CALLS
from benchmarks.native_drivers import GrpcDriver, KeysByBatch, NativeWorkload
from benchmarks.services import Item, ManagedServerSystem
from benchmarks.systems.base import ClientSpec
from benchmarks.systems.grpc_raw import CHANNEL_OPTIONS, CONNECT_TIMEOUT_S
from supernode.cluster.etcd_server import EtcdSettings, MemberSpec, member_command
from supernode.debian import ETCD_PACKAGE

# Our own server, so limits can suit bulk loading: up to LOAD_TXN_OPS puts per Txn.
MAX_TXN_OPS = 1024
MAX_REQUEST_BYTES = 8 * 1024 * 1024
LOAD_TXN_OPS = 500
LOAD_TXN_BYTES = 4 * 1024 * 1024
LOAD_CONCURRENCY = 4  # Txns in flight while loading: raft batches concurrent proposals
# 10M users x ~0.65 kB of KeyValue is ~6.5 GB in bbolt; 8 GiB (etcd's advised ceiling) leaves
# too little head room, and etcd only warns above it.
QUOTA_BACKEND_BYTES = 16 * 1024**3
# Raft entries kept in memory between snapshots; one entry is one load Txn (~300 kB), so this
# bounds the load's memory (etcd also keeps 5000 entries after each snapshot). Snapshots only
# happen while loading: the measured workloads are read-only.
SNAPSHOT_COUNT = 5000
TXN_BATCHES = (10, 100)
KV = "/etcdserverpb.KV"
# Restarting rebuilds the key index from the backend: allow for ten million keys.
RESTART_TIMEOUT_S = 600.0
_RPC_TIMEOUT_S = 120.0


# Our flags for a bulk-loaded, read-only baseline; the command line itself is the launcher's.
BENCH_SETTINGS = EtcdSettings(
    snapshot_count=SNAPSHOT_COUNT,
    auto_compaction_retention="0",
    max_txn_ops=MAX_TXN_OPS,
    max_request_bytes=MAX_REQUEST_BYTES,
    quota_backend_bytes=QUOTA_BACKEND_BYTES,
    log_level="info",  # the ready line is an info line; quiet once loaded
)


def etcd_command(
    binary: str, data_dir: Path, client_port: int, peer_port: int, host: str
) -> list[str]:
    """argv for a single-member etcd that only listens on ``host``.

    Both ports are explicit: etcd's defaults (2379/2380) could belong to another instance.
    """
    member = MemberSpec("bench", client_port, peer_port, data_dir / "etcd", host)
    return member_command(binary, member, [member], BENCH_SETTINGS)


def txn_chunks(items: Sequence[Item], max_ops: int, max_bytes: int) -> Iterator[Sequence[Item]]:
    """Split ``items`` into runs of at most ``max_ops`` pairs and about ``max_bytes``.

    A run always holds at least one pair, so a single oversized pair still goes out (and is
    refused by etcd with a clear error) rather than looping forever.
    """
    start = 0
    while start < len(items):
        stop, size = start, 0
        while stop < len(items) and stop - start < max_ops:
            pair_size = len(items[stop][0]) + len(items[stop][1])
            if stop > start and size + pair_size > max_bytes:
                break
            size += pair_size
            stop += 1
        yield items[start:stop]
        start = stop


def range_request(index: int, serializable: bool) -> rpc_pb2.RangeRequest:
    """One user's key; serializable: answered from the member's local state."""
    return rpc_pb2.RangeRequest(key=Dataset.handle(index).encode(), serializable=serializable)


def txn_request(indexes: list[int]) -> rpc_pb2.TxnRequest:
    """One Txn of serializable Ranges, etcd's batch read (a Txn of only serializable
    ranges is served locally too, like a LookupMany on one supernode)."""
    return rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_range=range_request(i, True)) for i in indexes]
    )


class EtcdSystem(ManagedServerSystem):
    """A private single-member etcd, loaded with Txns of many Puts."""

    name = "etcd"
    package = ETCD_PACKAGE
    port_count = 2  # client, peer
    # Logged once the member has elected itself and serves clients (3.4 zap / 3.5 wording).
    ready_line = re.compile(r"serving (client traffic|insecure client requests)")

    _channel: grpc.aio.Channel | None = None
    _kv: rpc_pb2_grpc.KVStub | None = None

    def command(self, binary: str, data_dir: Path, ports: Sequence[int]) -> list[str]:
        return etcd_command(binary, data_dir, ports[0], ports[1], self.host)

    async def after_load(self) -> None:
        """Restart the member once loaded, as the supernode's store is compacted once loaded.

        A bulk-loaded etcd 3.4 reads several times slower than the same member restarted on
        the same data: serializable Range under h2load (64 in flight) went from 2,667 to
        31,450 req/s at 100,000 users, and from 10,595 to 20,433 at 200 (2026-12-08, this
        machine). Most likely its read path copies the backend's buffer of not yet
        committed writes on every read (``ConcurrentReadTx``), and the load grows that
        buffer far past what a member filled over time would hold. Measured without the
        restart, the baseline was a loading artefact rather than etcd.
        """
        await self.restart(max(self.ready_timeout_s, RESTART_TIMEOUT_S))

    async def _connect(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._kv = rpc_pb2_grpc.KVStub(self._channel)

    async def _probe(self) -> None:
        # Linearizable: it also proves the member has elected itself leader.
        await self._stub().Range(rpc_pb2.RangeRequest(key=b"probe"), timeout=2.0)

    async def _disconnect(self) -> None:
        channel, self._channel, self._kv = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _stub(self) -> rpc_pb2_grpc.KVStub:
        if self._kv is None:
            raise RuntimeError("etcd not launched")
        return self._kv

    async def load_batch(self, items: Sequence[Item]) -> None:
        stub = self._stub()
        slots = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def put(chunk: Sequence[Item]) -> None:
            request = rpc_pb2.TxnRequest(
                success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key.encode(), value=value))
                    for key, value in chunk
                ]
            )
            async with slots:
                await stub.Txn(request, timeout=_RPC_TIMEOUT_S)

        await asyncio.gather(
            *(put(chunk) for chunk in txn_chunks(items, LOAD_TXN_OPS, LOAD_TXN_BYTES))
        )

    def workloads(self) -> list[ClientSpec]:
        target = self.target
        return [
            ClientSpec("etcd", "range-serializable", target),
            ClientSpec("etcd", "range-linearizable", target),
            *(ClientSpec("etcd", f"txn-{n}", target, batch=n) for n in TXN_BATCHES),
        ]

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        """Serializable Range and Txn-N under h2load, judged by etcd's
        ``grpc_server_handled_total`` on its client URL's /metrics. (Linearizable Range,
        a raft read index per call, is the Python generator's alone.)"""
        urls = [f"http://{self.target}/metrics"]

        def driver(method: str, request: bytes) -> GrpcDriver:
            return GrpcDriver(self.target, f"{KV}/{method}", request, (), urls, GRPC_GO_CALLS)

        single = range_request(keys[1][0], True).SerializeToString()
        txns = {n: txn_request(keys[n]).SerializeToString() for n in TXN_BATCHES}

        def present(indexes: list[int]) -> Callable[[], Awaitable[None]]:
            return lambda: self.check_present(indexes)

        return [
            NativeWorkload(
                self.name, "range-serializable", 1, driver("Range", single), present(keys[1])
            ),
            *(
                NativeWorkload(self.name, f"txn-{n}", n, driver("Txn", txns[n]), present(keys[n]))
                for n in txns
            ),
        ]

    async def check_present(self, indexes: list[int]) -> None:
        """LookupError unless every user of ``indexes`` is stored: etcd answers a Range of
        a missing key OK, so its call counter alone would pass a request for nothing."""
        response = await self._stub().Txn(txn_request(indexes), timeout=_RPC_TIMEOUT_S)
        found = sum(len(op.response_range.kvs) for op in response.responses)
        if found != len(indexes):
            raise LookupError(f"etcd holds {found} of the {len(indexes)} keys asked for")


class EtcdClient:
    """One gRPC channel to etcd; one workload.

    * ``range-serializable``: ``KV.Range`` of one key, answered from the member's local state.
    * ``range-linearizable``: the same through a raft read index (etcd's default read).
    * ``txn-N``: one ``KV.Txn`` of N serializable ``RequestRange`` ops; etcd serves a Txn whose
      ranges are all serializable locally too, like a batch lookup on one supernode.
    """

    def __init__(self, spec: ClientSpec) -> None:
        if spec.workload not in ("range-serializable", "range-linearizable") and not (
            spec.workload.startswith("txn-")
        ):
            raise ValueError(f"unknown etcd workload {spec.workload!r}")
        self.spec = spec
        self._txn = spec.workload.startswith("txn-")
        self._serializable = spec.workload != "range-linearizable"
        self._channel: grpc.aio.Channel | None = None
        self._kv: rpc_pb2_grpc.KVStub | None = None

    async def connect(self) -> None:
        # The supernode client's channel options: its own TCP connection, same limits.
        self._channel = grpc.aio.insecure_channel(self.spec.target, options=CHANNEL_OPTIONS)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self._channel.channel_ready()
        self._kv = rpc_pb2_grpc.KVStub(self._channel)

    async def lookup(self, indexes: list[int]) -> None:
        """Fetch users ``indexes``; raise unless every key came back."""
        found = 0
        if self._txn:
            response = await self._range_txn(indexes)
            for op in response.responses:
                found += len(op.response_range.kvs)
        else:
            for index in indexes:
                found += len((await self._range(index)).kvs)
        if found != len(indexes):
            raise LookupError(f"etcd returned {found} of {len(indexes)} keys")

    async def fetch(self, indexes: list[int]) -> list[bytes]:
        """The stored values of users ``indexes`` (for checks; the benchmark uses lookup)."""
        if self._txn:
            response = await self._range_txn(indexes)
            kvs = [kv for op in response.responses for kv in op.response_range.kvs]
        else:
            kvs = [kv for index in indexes for kv in (await self._range(index)).kvs]
        if len(kvs) != len(indexes):
            raise LookupError(f"etcd returned {len(kvs)} of {len(indexes)} keys")
        return [kv.value for kv in kvs]

    async def _range(self, index: int) -> rpc_pb2.RangeResponse:
        return await self._stub().Range(range_request(index, self._serializable))

    async def _range_txn(self, indexes: list[int]) -> rpc_pb2.TxnResponse:
        return await self._stub().Txn(txn_request(indexes))

    def _stub(self) -> rpc_pb2_grpc.KVStub:
        if self._kv is None:
            raise RuntimeError("not connected")
        return self._kv

    async def close(self) -> None:
        channel, self._channel, self._kv = self._channel, None, None
        if channel is not None:
            await channel.close()
