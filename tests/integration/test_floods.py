"""Floods of clients that do not read, idle, or never finish connecting: every queue they
fill is bounded in bytes, the server cuts them off whether they read or not, idle and
half-open connections are closed, RSS stays under a stated bound, and a legitimate client
keeps being served throughout (issue 16, "Abuse and resource bounds").

Every flood is bounded in count and time and stays on loopback. The RSS bounds are
generous (allocator slack, gRPC's own buffers); what they catch is growth with the flood,
as before (one Listen that never read plus 400 offers of 60 KB took RSS from 71 MB to
163 MB).
"""

import asyncio
from collections import Counter
from collections.abc import Callable

import grpc

from client_sdk.protocol.v1 import directory_pb2 as dpb
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import samples
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.test_rendezvous_server import Peer
from tests.integration.waiting import eventually

Code = grpc.StatusCode
# A client that stops reading: no BDP probing, so its receive window stays at 64 KB
# (an attacker's raw HTTP/2 client would grant even less).
NOT_READING = (("grpc.http2.bdp_probe", 0),)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
HANDSHAKE = PREFACE + EMPTY_SETTINGS + SETTINGS_ACK  # the client's half, complete
GOAWAY = 0x7
# A device record of about 1 KB: 16 endpoints.
ENDPOINTS = [
    dpb.Endpoint(address=f"198.18.{n}.{n}", port=40000 + n,
                 protocol=dpb.TRANSPORT_PROTOCOL_UDP, type=dpb.CANDIDATE_TYPE_HOST)
    for n in range(16)
]  # fmt: skip


def rss_mb(node: SupernodeProcess) -> float:
    """Resident memory of the node's processes, in MB."""
    assert node.process is not None
    pids = [node.process.pid, *(int(str(w["pid"])) for w in node.workers)]
    total_kb = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def metric(node: SupernodeProcess, name: str, **labels: str) -> float:
    return node.total(name, **labels)


async def test_a_listener_that_never_reads_is_cut_off_and_offers_stay_bounded(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(
        "--limits-answer-timeout-ms", "3000",
        "--limits-offer-burst", "1000", "--limits-offer-rate-per-second", "1000",
    )  # fmt: skip
    alice = await Peer.create(DirectoryConnection(node.grpc_target), "alice")
    bob = await Peer.create(DirectoryConnection(node.grpc_target, options=NOT_READING), "bob")
    listening = bob.listen()
    assert (await listening.read()).HasField("ready")  # and never read again
    before = rss_mb(node)

    payload = b"x" * 60_000
    results = await asyncio.gather(
        *(alice.connect(bob, payload) for _ in range(400)), return_exceptions=True
    )
    codes = Counter(r.code() if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in results)
    # A handful reached Bob's stream and went unanswered; once his queue held 256 KB he
    # was cut off, and every later offer found him offline at once.
    assert codes[Code.FAILED_PRECONDITION] >= 350, codes
    assert set(codes) <= {Code.FAILED_PRECONDITION, Code.DEADLINE_EXCEEDED}, codes
    grown = rss_mb(node) - before
    assert grown < 60, f"RSS grew {grown:.0f} MB (was 92 MB before the bound)"
    assert metric(node, "supernode_rendezvous_listeners") == 0
    # When Bob reads again he gets what was on its way and then the end of his stream,
    # with the reason, never a silent stream to wait on for ever.
    ended = await read_until_ended(listening)
    assert ended.code() == Code.RESOURCE_EXHAUSTED and "offers not read" in (ended.details() or "")
    assert listen_codes(node) == {"RESOURCE_EXHAUSTED": 1}
    listening.cancel()
    for peer in (alice, bob):
        await peer.conn.close()


def listen_codes(node: SupernodeProcess) -> dict[str, float]:
    """How the node's Listen calls ended, by status code (codes with no call left out).
    The primary's metrics: a worker forwards Listen, the primary serves it."""
    found: dict[str, float] = {}
    for (name, labels), value in samples(node.metrics()).items():
        tags = dict(labels)
        if name == "supernode_rpc_requests_total" and tags.get("method") == "Listen" and value:
            found[tags["code"]] = found.get(tags["code"], 0.0) + value
    return found


async def read_until_ended(call: grpc.aio.UnaryStreamCall) -> grpc.aio.AioRpcError:
    """Read a stream the server ended (bounded: at most 10,000 messages and 30 s) and
    return the error it ended with."""
    async with asyncio.timeout(30):
        for _ in range(10_000):
            try:
                if await call.read() is grpc.aio.EOF:
                    break
            except grpc.aio.AioRpcError as error:
                return error
    raise AssertionError("the stream ended without an error")


async def _async(value: bool) -> bool:
    return value


async def test_watchers_that_never_read_are_cut_off_and_a_reader_gets_everything(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(
        "--limits-watch-queue-bytes", "32768",
        "--limits-watch-stall-seconds", "2",
        "--limits-max-watches-per-session", "100",
        "--sweep-interval-seconds", "0.2",
    )  # fmt: skip
    async with (
        DirectoryConnection(node.grpc_target) as star_conn,
        DirectoryConnection(node.grpc_target) as reader_conn,
        DirectoryConnection(node.grpc_target, options=NOT_READING) as lazy_conn,
    ):
        star = await new_user(star_conn, "star")
        await star_conn.register_device(device(star, "star", "phone", seq=1))
        await new_user(reader_conn, "reader")
        await new_user(lazy_conn, "lazy")
        lazy = [lazy_conn.watch(["star"]) for _ in range(100)]  # never read
        reader = reader_conn.watch(["star"])
        assert (await reader.read()).HasField("snapshot")
        await eventually(
            lambda: _async(metric(node, "supernode_watch_subscribers") == 101),
            what="all watches open",
        )
        before = rss_mb(node)
        changes = 200
        for seq in range(2, 2 + changes):
            await star_conn.register_device(
                device(star, "star", "phone", seq=seq, endpoints=ENDPOINTS)
            )
        received = 0
        async with asyncio.timeout(30):
            while received < changes:
                event = await reader.read()
                assert event.HasField("change"), event
                received += 1
        # Every reader-less watcher is gone, cut off by its byte bound or its stall.
        await eventually(
            lambda: _async(metric(node, "supernode_watch_subscribers") == 1),
            what="the 100 watchers that never read cut off",
        )
        assert rss_mb(node) - before < 60
        # A cut-off watcher that reads again gets what was on its way and then the end of
        # its stream (to resume from), never a silent stream to wait on for ever.
        assert (await read_until_ended(lazy[0])).code() == Code.RESOURCE_EXHAUSTED
        reader.cancel()
        for call in lazy:
            call.cancel()


async def _closed_by_server(host: str, port: int, send: bytes) -> bool:
    """Open a connection, send ``send``, read until the server closes it; whether it
    said GOAWAY first."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(send)
    received = b""
    try:
        async with asyncio.timeout(30):
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.close()
    return _frame_kinds(received).count(GOAWAY) > 0


def _frame_kinds(data: bytes) -> list[int]:
    kinds, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at : at + 3], "big")
        kinds.append(data[at + 3])
        at += 9 + length
    return kinds


async def test_idle_and_half_open_connections_are_closed_but_an_idle_watch_is_not(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode("--idle-connection-seconds", "1", "--handshake-timeout-seconds", "1")
    host, port = node.grpc_target.rsplit(":", 1)
    async with (
        DirectoryConnection(node.grpc_target) as watcher_conn,
        DirectoryConnection(node.grpc_target) as writer_conn,
    ):
        quiet = await new_user(watcher_conn, "quiet")
        watch = watcher_conn.watch(["quiet"])
        assert (await watch.read()).HasField("snapshot")
        # Half-open (nothing sent), preface only, and a finished handshake then idle.
        closed = await asyncio.gather(
            *(_closed_by_server(host, int(port), b"") for _ in range(20)),
            *(_closed_by_server(host, int(port), PREFACE) for _ in range(20)),
            *(_closed_by_server(host, int(port), HANDSHAKE) for _ in range(20)),
        )
        assert all(closed)  # each got GOAWAY, then EOF
        # The watch waited longer than the idle bound with nothing on it: an open stream
        # is a call in progress, so its connection is not idle, and it still delivers.
        await writer_conn.login(quiet, "quiet")
        await writer_conn.register_device(device(quiet, "quiet", "phone"))
        async with asyncio.timeout(10):
            event = await watch.read()
        assert event.HasField("change") and event.change.handle == "quiet"
        watch.cancel()


# The stated bound (README "Resource bounds"): a node under the flood below stays under it.
FLOOD_RSS_BOUND_MB = 250


async def test_a_legitimate_client_is_served_through_a_flood_and_rss_stays_bounded(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """Half-open and idle connections, watchers that never read and a listener that never
    reads, all at once, while a legitimate client keeps looking users up: every one of its
    calls succeeds (benchmarks.abuse --only flood reports their latency)."""
    node = start_supernode(
        "--limits-answer-timeout-ms", "2000",
        "--limits-offer-burst", "1000", "--limits-offer-rate-per-second", "1000",
        "--limits-max-watches-per-session", "100",
        "--limits-watch-stall-seconds", "2", "--sweep-interval-seconds", "0.2",
    )  # fmt: skip
    host, port = node.grpc_target.rsplit(":", 1)
    async with (
        DirectoryConnection(node.grpc_target) as legit,
        DirectoryConnection(node.grpc_target) as star_conn,
        DirectoryConnection(node.grpc_target, options=NOT_READING) as lazy_conn,
    ):
        await new_user(legit, "legit")
        star = await new_user(star_conn, "star")
        await new_user(lazy_conn, "lazy")
        sockets = [await asyncio.open_connection(host, int(port)) for _ in range(100)]
        for _, writer in sockets[50:]:
            writer.write(HANDSHAKE)  # then idle
        lazy = [lazy_conn.watch(["star"]) for _ in range(50)]
        alice = await Peer.create(DirectoryConnection(node.grpc_target), "alice")
        bob = await Peer.create(DirectoryConnection(node.grpc_target, options=NOT_READING), "bob")
        listening = bob.listen()
        assert (await listening.read()).HasField("ready")

        done = asyncio.Event()
        answered = failed = 0

        async def keep_looking() -> None:
            nonlocal answered, failed
            while not done.is_set():
                try:
                    await legit.lookup("star")
                    answered += 1
                except grpc.aio.AioRpcError:
                    failed += 1
                await asyncio.sleep(0.01)

        looking = asyncio.create_task(keep_looking())
        offers = asyncio.gather(
            *(alice.connect(bob, b"x" * 60_000) for _ in range(200)), return_exceptions=True
        )
        # More than HTTP/2 buffers hold for a watcher that reads nothing (its 64 KB window,
        # and through a worker 16 KB more): the rest waits on the node, and stalls.
        for seq in range(1, 401):
            await star_conn.register_device(
                device(star, "star", "phone", seq=seq, endpoints=ENDPOINTS)
            )
        await offers
        await eventually(
            lambda: _async(metric(node, "supernode_watch_subscribers") == 0),
            what="the watchers that never read cut off",
        )
        done.set()
        await looking
        rss = rss_mb(node)
        assert failed == 0 and answered > 0, (answered, failed)
        assert rss < FLOOD_RSS_BOUND_MB, f"RSS {rss:.0f} MB"
        listening.cancel()
        for _, writer in sockets:
            writer.close()
        for call in lazy:
            call.cancel()
        for peer in (alice, bob):
            await peer.conn.close()
