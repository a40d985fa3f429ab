"""Re-measure issue 16's "Abuse and resource bounds" figures against a real node.

Quick and bounded: every phase runs for at most ``--seconds`` (or a fixed count), on
loopback, against a fresh ``supernode serve`` with its default settings unless told
otherwise. Run it as::

    .venv/bin/python -m benchmarks.abuse                 # rates, scrape, floods (~2 min)
    .venv/bin/python -m benchmarks.abuse --only rates    # one part: rates, scrape,
                                                         #   listen, watch, flood, micro, idle
    .venv/bin/python -m benchmarks.abuse --no-limits     # the same against limits off

``idle`` waits for the default idle bound (120 s) and is left out unless asked for.
Each line prints what one client achieved: calls answered per second and how many were
refused with RESOURCE_EXHAUSTED; RSS in MB of the node's process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from benchmarks.systems.process import ServerProcess
from benchmarks.systems.supernode import plaintext_flags
from client_sdk.identity import Identity
from client_sdk.protocol.signing import LOGIN_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rrpc
from client_sdk.transport import DirectoryConnection, now_ms, sign_account, sign_device_record

_READY = re.compile(r"supernode ready (\{.*\})")
NOT_READING = (("grpc.http2.bdp_probe", 0),)
# The changes a watch flood watches stand for many users' writes: one writer here.
MANY_WRITERS = ("--rate-write-per-account-burst", "100000",
                "--rate-write-per-source-burst", "100000")  # fmt: skip
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# The client's half of the HTTP/2 handshake, complete: the preface, its SETTINGS and the
# ACK of the server's (without the ACK a server closes after its settings timeout, 60 s).
HANDSHAKE = PREFACE + EMPTY_SETTINGS + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


class Node:
    """``supernode serve`` on a temporary data directory; of another checkout's code when
    ``Node.tree`` is set (``--tree``: the figures before a change), which knows no ``rate``
    settings, so they are left out."""

    tree: Path | None = None

    def __init__(self, *args: str, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bench-abuse-")) / "db"
        script = Path(sys.executable).with_name("supernode")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "supernode.cli"]
        if self.tree is not None:
            command = ["env", f"PYTHONPATH={self.tree}", sys.executable, "-m", "supernode.cli"]
            args = _without_rate_flags(args)
        self.argv = [
            *command, "serve", *plaintext_flags(self.tree),
            "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", *args,
        ]  # fmt: skip
        self.process: ServerProcess | None = None
        self.target = ""
        self.metrics_url = ""

    async def __aenter__(self) -> Node:
        self.process = ServerProcess(self.argv, _READY, cwd=self.tree)
        ready = json.loads((await self.process.wait_ready(60.0)).group(1))
        self.target = ready["grpc"]
        self.metrics_url = f"http://{ready['metrics']}/metrics"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            await self.process.stop()

    def rss_mb(self) -> float:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def _without_rate_flags(args: tuple[str, ...]) -> tuple[str, ...]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--no-rate-enabled":
            continue
        elif arg.startswith("--rate-"):
            skip = True
        else:
            kept.append(arg)
    return tuple(kept)


def line(what: str, **figures: object) -> None:
    shown = "  ".join(f"{k}={v}" for k, v in figures.items())
    print(f"{what:<34} {shown}", flush=True)


Call = Callable[[int], Awaitable[Any]]


async def rate(what: str, call: Call, seconds: float, limit: int = 200_000) -> None:
    """Call ``call(n)`` in a loop from one client for ``seconds``: calls answered per
    second over the whole run and over its second half (after any burst), and refusals."""
    ok_at: list[float] = []
    refused = other = 0
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds and n < limit:
        try:
            await call(n)
            ok_at.append(time.monotonic() - started)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused += 1
            else:
                other += 1
        n += 1
    elapsed = time.monotonic() - started
    late = sum(1 for at in ok_at if at >= elapsed / 2)
    line(
        what,
        ok_per_s=round(len(ok_at) / elapsed),
        sustained_ok_per_s=round(late / (elapsed / 2), 1),
        refused=refused,
        other_errors=other,
        calls=n,
    )


async def user(conn: DirectoryConnection, handle: str) -> Identity:
    identity = Identity.generate()
    await conn.create_account(identity, handle, handle)
    await conn.login(identity, handle)
    return identity


async def measure_rates(args: argparse.Namespace, flags: list[str]) -> None:
    """Each rate on a fresh node, from one client with one account (made first)."""
    many = [f"many-{n}" for n in range(1000)]
    stranger = Identity.generate()

    def calls(conn: DirectoryConnection, identity: Identity, handle: str) -> dict[str, Call]:
        async def create(n: int) -> None:
            request = sign_account(Identity.generate(), f"made-{n}", "x", True)
            await conn.accounts.CreateAccount(request)

        async def challenge(n: int) -> None:
            await conn.sessions.GetChallenge(pb.GetChallengeRequest(handle=handle))

        async def login(n: int) -> None:
            await conn.login(identity, handle)

        async def failed_login(n: int) -> None:
            asked = await conn.sessions.GetChallenge(pb.GetChallengeRequest(handle=handle))
            signature = stranger.sign(LOGIN_DOMAIN, asked.challenge)
            request = pb.LoginRequest(handle=handle, challenge=asked.challenge, signature=signature)
            try:
                await conn.sessions.Login(request)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise

        async def get_account(n: int) -> None:
            await conn.get_account(handle)

        async def lookup(n: int) -> None:
            await conn.lookup(handle)

        async def lookup_many(n: int) -> None:
            await conn.lookup_many(many)

        return {
            "CreateAccount/s (no login)": create,
            "Login/s (challenge + login)": login,
            "failed logins/s": failed_login,
            "GetChallenge/s": challenge,
            "GetAccount/s": get_account,
            "Lookup/s": lookup,
            "LookupMany calls/s (x1000 handles)": lookup_many,
        }

    names = list(calls(DirectoryConnection("127.0.0.1:1"), stranger, "x"))
    for name in names:
        async with Node(*flags) as node, DirectoryConnection(node.target) as conn:
            identity = await user(conn, "bench")
            await rate(name, calls(conn, identity, "bench")[name], args.seconds)


async def measure_scrape(args: argparse.Namespace, flags: list[str]) -> None:
    """6,500 discoverable accounts made with limits off; then, with ``flags``, one
    source scrapes them, logging in again before every search."""
    groups, per_group = 130, 50
    data_dir = Path(tempfile.mkdtemp(prefix="bench-abuse-")) / "db"
    async with (
        Node("--no-rate-enabled", data_dir=data_dir) as node,
        DirectoryConnection(node.target) as conn,
    ):
        requests = [
            sign_account(Identity.generate(), f"s{g:03d}x{r:02d}", f"S {g} {r}", True)
            for g in range(groups)
            for r in range(per_group)
        ]
        for start in range(0, len(requests), 100):
            batch = requests[start : start + 100]
            await asyncio.gather(*(conn.accounts.CreateAccount(r) for r in batch))
    async with Node(*flags, data_dir=data_dir) as node, DirectoryConnection(node.target) as conn:
        scraper_handle = f"scraper-{secrets.token_hex(2)}"
        scraper = await user(conn, scraper_handle)
        found: set[str] = set()
        refused = 0
        started = time.monotonic()
        deadline = started + args.scrape_seconds
        group = 0
        while group < groups and time.monotonic() < deadline:
            try:
                await conn.login(scraper, scraper_handle)  # a fresh session each time
                response = await conn.search(f"s{group:03d}", 50)
                found.update(a.handle for a in response.accounts)
                group += 1
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                refused += 1
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        total = groups * per_group
        line(
            "search scrape (re-login each search)",
            scraped=f"{len(found)}/{total}",
            seconds=round(elapsed, 1),
            accounts_per_s=round(len(found) / elapsed),
            refused=refused,
            all_in_s=round(total / max(1e-9, len(found) / elapsed)),
        )


def signed_device(
    identity: Identity, handle: str, device_id: str, seq: int, endpoints: int = 1
) -> pb.SignedDeviceRecord:
    return sign_device_record(
        identity,
        pb.DeviceRecord(
            handle=handle,
            device_id=device_id,
            seq=seq,
            issued_at_ms=now_ms(),
            ttl_seconds=600,
            transport_key=Identity.generate().public_key,
            status=pb.DEVICE_STATUS_ONLINE,
            endpoints=[
                pb.Endpoint(
                    address=f"198.18.{n}.{n}",
                    port=40000 + n,
                    protocol=pb.TRANSPORT_PROTOCOL_UDP,
                    type=pb.CANDIDATE_TYPE_HOST,
                )
                for n in range(endpoints)
            ],
        ),
    )


def _endpoint(n: int) -> pb.Endpoint:
    return pb.Endpoint(
        address=f"198.18.{n}.{n}",
        port=40000 + n,
        protocol=pb.TRANSPORT_PROTOCOL_UDP,
        type=pb.CANDIDATE_TYPE_HOST,
    )


async def listen_flood(node: Node, offers: int = 400, size: int = 60_000) -> str:
    """One Listen that never reads, then ``offers`` offers of ``size`` bytes to it."""
    tag = secrets.token_hex(2)
    async with (
        DirectoryConnection(node.target) as caller_conn,
        DirectoryConnection(node.target, options=NOT_READING) as callee_conn,
    ):
        caller = await user(caller_conn, f"caller-{tag}")
        callee = await user(callee_conn, f"callee-{tag}")
        await caller_conn.register_device(signed_device(caller, f"caller-{tag}", "dev", 1))
        await callee_conn.register_device(signed_device(callee, f"callee-{tag}", "dev", 1))
        listening = rrpc.RendezvousServiceStub(callee_conn.channel).Listen(  # type: ignore[no-untyped-call]
            rpb.ListenRequest(device_id="dev"), metadata=callee_conn.metadata
        )
        await listening.read()  # ready; never read again
        stub = rrpc.RendezvousServiceStub(caller_conn.channel)  # type: ignore[no-untyped-call]
        request = rpb.ConnectRequest(
            handle=f"callee-{tag}", device_id="dev", from_device_id="dev", payload=b"x" * size
        )
        results = await asyncio.gather(
            *(stub.Connect(request, metadata=caller_conn.metadata) for _ in range(offers)),
            return_exceptions=True,
        )
        listening.cancel()
    codes: dict[str, int] = {}
    for result in results:
        name = result.code().name if isinstance(result, grpc.aio.AioRpcError) else "OK"
        codes[name] = codes.get(name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(codes.items()))


async def measure_listen(args: argparse.Namespace, flags: list[str]) -> None:
    async with Node(
        *flags, "--limits-offer-burst", "1000", "--limits-offer-rate-per-second", "1000",
        "--rate-connect-per-account-burst", "1000", "--rate-connect-per-source-burst", "1000",
    ) as node:  # fmt: skip
        before = node.rss_mb()
        codes = await listen_flood(node)
        line(
            "Listen never read + 400 offers 60KB",
            rss_before_mb=round(before),
            rss_after_mb=round(node.rss_mb()),
            offers=codes,
        )


async def watch_flood(
    node: Node, watchers: int, changes: int, wait_s: float = 5.0
) -> tuple[int, int, float]:
    """``watchers`` Watch streams that never read; ``changes`` changes of the watched
    handle. Returns how many the server had open before the changes and after them
    (once all were cut off, or after ``wait_s``), and how long the changes took."""
    tag = secrets.token_hex(2)
    async with (
        DirectoryConnection(node.target) as star_conn,
        DirectoryConnection(node.target, options=NOT_READING) as lazy_conn,
    ):
        star = await user(star_conn, f"star-{tag}")
        # Within the default limits: 25 watch opens per account (burst 30), 8 watches per
        # session, so 4 logins per account; 8 accounts for 200 (CreateAccount burst 20).
        calls = []
        for n in range(watchers):
            handle = f"lazy-{tag}-{n // 25}"
            if n % 25 == 0:
                identity = await user(lazy_conn, handle)
            elif n % 8 == 0:
                await lazy_conn.login(identity, handle)  # a fresh session
            calls.append(lazy_conn.watch([f"star-{tag}"]))
        opened = await _watchers_open(node, 0.0, until=watchers)
        started = time.monotonic()
        for seq in range(1, changes + 1):
            await star_conn.register_device(signed_device(star, f"star-{tag}", "d", seq, 16))
        took = time.monotonic() - started
        open_streams = await _watchers_open(node, wait_s)
        for call in calls:
            call.cancel()
    return opened, open_streams, took


async def _watchers_open(node: Node, wait_s: float, until: int = 0) -> int:
    """The node's open watch streams once they reach ``until``, or after ``wait_s``
    (at least 5 s when waiting for them to open)."""
    import urllib.request

    url = node.metrics_url
    deadline = time.monotonic() + max(wait_s, 5.0 if until else 0.0)
    while True:
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        found = re.search(r"^supernode_watch_subscribers (\S+)$", text, re.M)
        count = int(float(found.group(1))) if found else 0
        if count == until or time.monotonic() >= deadline:
            return count
        await asyncio.sleep(0.5)


async def measure_watch(args: argparse.Namespace, flags: list[str]) -> None:
    async with Node(*flags, *MANY_WRITERS) as node:
        before = node.rss_mb()
        # Fewer changes than a queue's 1,024 events: only a byte or time bound cuts them.
        opened, still_open, took = await watch_flood(node, 200, 300, wait_s=40.0)
        line(
            "200 Watch never read + 300 changes",
            rss_before_mb=round(before),
            rss_after_mb=round(node.rss_mb()),
            opened=opened,
            still_open_after_40s=still_open,
            changes_s=round(took, 1),
        )


async def half_open(host: str, port: int, send: bytes) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(send)
    return reader, writer


async def measure_flood(args: argparse.Namespace, flags: list[str]) -> None:
    """Slow and half-open clients and streams that never read, all at once, while one
    legitimate client keeps looking a user up: its success rate and latency."""
    async with Node(
        *flags, *MANY_WRITERS, "--limits-offer-burst", "1000",
        "--limits-offer-rate-per-second", "1000", "--rate-connect-per-account-burst", "1000",
        "--rate-connect-per-source-burst", "1000",
    ) as node:  # fmt: skip
        host, port = node.target.rsplit(":", 1)
        before = node.rss_mb()
        async with DirectoryConnection(node.target) as legit:
            legit_handle = f"legit-{secrets.token_hex(2)}"
            await user(legit, legit_handle)
            idle = HANDSHAKE
            sockets = [await half_open(host, int(port), b"") for _ in range(200)]
            sockets += [await half_open(host, int(port), idle) for _ in range(200)]
            stop = asyncio.Event()
            latencies: list[float] = []
            failures = 0

            async def keep_looking() -> None:
                nonlocal failures
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        await legit.lookup(legit_handle)
                        latencies.append(time.perf_counter() - started)
                    except grpc.aio.AioRpcError:
                        failures += 1
                    await asyncio.sleep(0.05)  # a user's pace: 20 a second, within limits

            looking = asyncio.create_task(keep_looking())
            flood_started = time.monotonic()
            await asyncio.gather(listen_flood(node), watch_flood(node, 100, 500))
            flood_s = time.monotonic() - flood_started
            stop.set()
            await looking
            for _, writer in sockets:
                writer.close()
        total = len(latencies) + failures
        ordered = sorted(latencies)
        line(
            "legit Lookup (20/s) during the flood",
            ok=f"{len(latencies)}/{total}",
            p50_ms=round(statistics.median(ordered) * 1000, 1) if ordered else None,
            p99_ms=round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
            flood_s=round(flood_s, 1),
            rss_before_mb=round(before),
            rss_peak_after_mb=round(node.rss_mb()),
        )


async def measure_idle(args: argparse.Namespace, flags: list[str]) -> None:
    """How long a connection that sends nothing, or finishes the handshake and then
    idles, stays open (at most 150 s: both at once)."""

    async def probe(host: str, port: int, what: str, send: bytes) -> None:
        reader, writer = await half_open(host, port, send)
        started = time.monotonic()
        closed = "not closed in 150 s"
        try:
            async with asyncio.timeout(150):
                while await reader.read(65536):
                    pass
            closed = f"closed after {time.monotonic() - started:.0f} s"
        except TimeoutError:
            pass
        writer.close()
        line(f"connection {what}", result=closed)

    async with Node(*flags) as node:
        host, port = node.target.rsplit(":", 1)
        await asyncio.gather(
            probe(host, int(port), "half-open", b""),
            probe(host, int(port), "handshake then idle", HANDSHAKE),
        )


def measure_micro(args: argparse.Namespace, flags: list[str]) -> None:
    """What the rate limits add to a Lookup, in process: the gate's check (peer read,
    source key, two buckets) against the handler's own cost, measured by timeit."""
    import timeit

    from supernode.rate import RateLimiter, RateSettings
    from supernode.rpc.source import RateGates

    class Context:
        def peer(self) -> str:
            return "ipv4:127.0.0.1:54321"

    context = Context()
    for enabled in (True, False):
        gates = RateGates(
            RateLimiter(
                RateSettings(enabled=enabled, lookup_per_account_per_second=1e9,
                             lookup_per_source_per_second=1e9),
                clock=time.monotonic,
            )
        )  # fmt: skip
        check = gates.gate("Lookup").check
        number = 200_000
        seconds = timeit.timeit(lambda: check(context, "alice"), number=number)  # noqa: B023
        line(
            f"Lookup gate check (limits {'on' if enabled else 'off'})",
            us_per_call=round(seconds / number * 1e6, 2),
        )


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url) as response:
        return str(response.read().decode())


async def measure_lookup_cost(args: argparse.Namespace, flags: list[str]) -> None:
    """A Lookup's time inside the server (its handler histogram), limits on (raised out of
    the way) and off: what the check adds to a whole call."""
    raised = ["--rate-lookup-per-account-per-second", "1e9", "--rate-lookup-per-account-burst",
              "1000000000", "--rate-lookup-per-source-per-second", "1e9",
              "--rate-lookup-per-source-burst", "1000000000"]  # fmt: skip
    for name, extra in (("on", raised), ("off", ["--no-rate-enabled"])):
        async with Node(*extra) as node, DirectoryConnection(node.target) as conn:
            await user(conn, "bench")
            for _ in range(3000):
                await conn.lookup("bench")
            text = await asyncio.to_thread(_scrape, node.metrics_url)
            total = count = 0.0
            for row in text.splitlines():
                if 'method="Lookup"' in row and 'code="OK"' in row:
                    if row.startswith("supernode_rpc_handler_seconds_sum"):
                        total = float(row.split()[-1])
                    elif row.startswith("supernode_rpc_handler_seconds_count"):
                        count = float(row.split()[-1])
            line(f"Lookup in the handler (limits {name})", mean_us=round(total / count * 1e6, 1))


PARTS = {
    "rates": measure_rates,
    "scrape": measure_scrape,
    "listen": measure_listen,
    "watch": measure_watch,
    "flood": measure_flood,
    "idle": measure_idle,
    "lookup_cost": measure_lookup_cost,
}


async def main(args: argparse.Namespace) -> None:
    flags = ["--no-rate-enabled"] if args.no_limits else []
    parts = args.only or ["micro", "lookup_cost", "rates", "scrape", "listen", "watch", "flood"]
    for part in parts:
        if part == "micro":
            measure_micro(args, flags)
        else:
            await PARTS[part](args, flags)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=[*PARTS, "micro"])
    parser.add_argument("--seconds", type=float, default=4.0, help="per rate measured")
    parser.add_argument("--scrape-seconds", type=float, default=20.0)
    parser.add_argument("--no-limits", action="store_true", help="rate limits off")
    parser.add_argument(
        "--tree",
        type=Path,
        help="serve another checkout's code (e.g. `git archive main` unpacked, with the "
        "generated *_pb2* files copied in): the figures before a change",
    )
    args = parser.parse_args()
    Node.tree = args.tree
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
