"""Scenarios beyond lookups: register/renew throughput, watch notification delay, and
peer-to-peer connect time (direct and relayed), each against a real supernode process.

    python -m benchmarks.scenarios [--quick] [--out DIR]

Writes ``scenarios.json`` and ``scenarios.md`` into ``DIR/<timestamp>/`` (default
``benchmarks/results``). Latencies go into HdrHistograms like the lookup benchmark's.
The clients run in this process and share the machine's cores with the server, as the
lookup benchmark's generator does; compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import histogram as hist
from benchmarks.report import RESULTS_DIR, save_run
from benchmarks.systems.process import ServerProcess
from client_sdk import Client, ClientConfig, Identity, P2PSettings, PeerConnection
from client_sdk.p2p.certificates import raw_public_key
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, now_ms, sign_device_record

_READY = re.compile(r"supernode ready (\{.*\})")
PLAINTEXT = ClientConfig(plaintext=True)  # the node below serves plaintext on loopback


@dataclasses.dataclass(frozen=True)
class Settings:
    seconds: float = 10.0  # per throughput scenario
    register_concurrency: int = 32
    watch_changes: int = 2000
    watch_rate: float = 200.0  # changes per second while measuring notification delay
    connects: int = 20  # per P2P path


@dataclasses.dataclass
class Node:
    process: ServerProcess
    target: str
    metrics_url: str
    stun: tuple[str, int]
    data_dir: Path


async def start_node(extra_args: tuple[str, ...] = ()) -> Node:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-scenarios-"))
    script = Path(sys.executable).with_name("supernode")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "supernode.cli"]
    process = ServerProcess(
        [*command, "serve", "--tls-plaintext", "--data-dir", str(data_dir / "db"),
         "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--stun-listen", "127.0.0.1:0",
         "--limits-offer-burst", "1000", "--limits-offer-rate-per-second", "1000",
         "--no-rate-enabled", *extra_args],  # one client drives every scenario
        _READY,
    )  # fmt: skip
    ready = json.loads((await process.wait_ready(60.0)).group(1))
    host, port = str(ready["stun"]).rsplit(":", 1)
    return Node(
        process, ready["grpc"], f"http://{ready['metrics']}/metrics", (host, int(port)), data_dir
    )


async def stop_node(node: Node) -> None:
    await node.process.stop()
    shutil.rmtree(node.data_dir, ignore_errors=True)


def figures(histogram: Any, seconds: float | None = None) -> dict[str, Any]:
    summary = hist.summarize(histogram)
    out: dict[str, Any] = {
        "count": summary.count,
        "p50_us": summary.p50,
        "p90_us": summary.p90,
        "p99_us": summary.p99,
        "p999_us": summary.p999,
        "max_us": summary.max,
    }
    if seconds:
        out["per_second"] = summary.count / seconds
    return out


# ---------------------------------------------------------------------- register / renew


async def _user(target: str, handle: str) -> tuple[DirectoryConnection, Identity]:
    connection = DirectoryConnection(target)
    identity = Identity.generate()
    await connection.create_account(identity, handle)
    await connection.login(identity, handle)
    return connection, identity


def _record(
    identity: Identity, handle: str, device_id: str, seq: int, port: int = 40000
) -> pb.SignedDeviceRecord:
    """A device record; the same ``port`` as before makes a renewal (no watch event), another
    one a change watchers are told of."""
    record = pb.DeviceRecord(
        handle=handle, device_id=device_id, seq=seq, issued_at_ms=now_ms(), ttl_seconds=300,
        transport_key=identity.public_key, status=pb.DEVICE_STATUS_ONLINE,
        endpoints=[pb.Endpoint(address="198.51.100.7", port=port, protocol=1, type=1)],
    )  # fmt: skip
    return sign_device_record(identity, record)


async def register_renew(node: Node, settings: Settings) -> dict[str, Any]:
    """Closed loop: each of N devices renews (a higher seq, freshly signed) back to back."""
    users = [await _user(node.target, f"reg{n:05d}") for n in range(settings.register_concurrency)]
    latency = hist.new_histogram()
    deadline = time.monotonic() + settings.seconds

    async def renew_forever(
        connection: DirectoryConnection, identity: Identity, handle: str
    ) -> None:
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            signed = _record(identity, handle, "dev", seq)  # signing is the device's cost
            started = time.perf_counter()
            await connection.register_device(signed)
            hist.record_us(latency, (time.perf_counter() - started) * 1e6)

    started = time.monotonic()
    await asyncio.gather(*(renew_forever(c, i, f"reg{n:05d}") for n, (c, i) in enumerate(users)))
    elapsed = time.monotonic() - started
    for connection, _ in users:
        await connection.close()
    return {"concurrency": settings.register_concurrency, **figures(latency, elapsed)}


async def keepalive_renew(node: Node, settings: Settings) -> dict[str, Any]:
    """Closed loop: each of N devices, registered once, keeps its lease alive back to back
    (``KeepAlive``: no new record, no signature to check, no watch event)."""
    users = [await _user(node.target, f"ka{n:05d}") for n in range(settings.register_concurrency)]
    for n, (connection, identity) in enumerate(users):
        await connection.register_device(_record(identity, f"ka{n:05d}", "dev", 1))
    latency = hist.new_histogram()
    deadline = time.monotonic() + settings.seconds

    async def keep_alive_forever(connection: DirectoryConnection) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await connection.keep_alive("dev", 1)
            hist.record_us(latency, (time.perf_counter() - started) * 1e6)

    started = time.monotonic()
    await asyncio.gather(*(keep_alive_forever(c) for c, _ in users))
    elapsed = time.monotonic() - started
    for connection, _ in users:
        await connection.close()
    out = {"concurrency": settings.register_concurrency, **figures(latency, elapsed)}
    # Renewed at half its life, a 300 s lease costs one keepalive per device per 150 s.
    out["devices_online_at_300s_ttl"] = out["per_second"] * RENEWAL_PERIOD_S
    return out


# Clients renew at about half the TTL: at a 300 s lease, every 150 s.
RENEWAL_PERIOD_S = 150


# ---------------------------------------------------------------------- watch delay


async def watch_delay(node: Node, settings: Settings) -> dict[str, Any]:
    """A watcher follows 10 devices while they change (a new endpoint each time) at a fixed
    rate: the delay from a
    writer sending a change to the watcher receiving its event, plus the server's own
    histogram of commit-to-write delay."""
    writer, identity = await _user(node.target, "watched")
    watcher, _ = await _user(node.target, "watcher")
    devices = [f"d{n}" for n in range(10)]
    sent_at: dict[tuple[str, int], float] = {}
    seqs = dict.fromkeys(devices, 0)
    for device in devices:
        seqs[device] += 1
        await writer.register_device(_record(identity, "watched", device, seqs[device]))
    delay = hist.new_histogram()
    received = asyncio.Event()
    call = watcher.presence.Watch(pb.WatchRequest(handles=["watched"]), metadata=watcher.metadata)

    async def follow() -> None:
        async for event in call:
            if not event.HasField("change") or not event.change.HasField("device"):
                continue
            record = pb.DeviceRecord.FromString(event.change.device.signed.record)
            sent = sent_at.pop((record.device_id, record.seq), None)
            if sent is not None:
                hist.record_us(delay, (time.perf_counter() - sent) * 1e6)
                if delay.get_total_count() >= settings.watch_changes:
                    received.set()

    following = asyncio.create_task(follow())
    interval = 1.0 / settings.watch_rate
    next_at = time.perf_counter()
    for n in range(settings.watch_changes):
        device = devices[n % len(devices)]
        seqs[device] += 1
        # A new endpoint each time: a renewal that changes nothing is no watch event.
        signed = _record(identity, "watched", device, seqs[device], port=40000 + seqs[device])
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        sent_at[(device, seqs[device])] = time.perf_counter()
        await writer.register_device(signed)
    try:
        async with asyncio.timeout(30):
            await received.wait()
    finally:
        call.cancel()
        following.cancel()
        await writer.close()
        await watcher.close()
    return {
        "changes": settings.watch_changes,
        "rate_per_second": settings.watch_rate,
        "client_send_to_event": figures(delay),
        "server_commit_to_write": server_histogram(
            node.metrics_url, "supernode_watch_notification_delay_seconds"
        ),
    }


def server_histogram(url: str, name: str) -> dict[str, Any]:
    """Count, mean and bucket-bounded p50/p99 of a Prometheus histogram, from a scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_sum":
                total = sample.value
            elif sample.name == f"{name}_count":
                count = sample.value
    buckets.sort()

    def upper_bound(quantile: float) -> float:
        wanted = quantile * count
        return next((le for le, seen in buckets if seen >= wanted), float("inf"))

    return {
        "count": int(count),
        "mean_us": total / count * 1e6 if count else 0.0,
        "p50_at_most_us": upper_bound(0.5) * 1e6,
        "p99_at_most_us": upper_bound(0.99) * 1e6,
    }


# ---------------------------------------------------------------------- P2P connect


async def p2p_client(target: str, handle: str, settings: P2PSettings) -> Client:
    """A new account with one registered device "dev", peer to peer enabled."""
    client = Client([target], Identity.generate(), handle, config=PLAINTEXT)
    await client.create_account(handle)
    key = Ed25519PrivateKey.generate()
    await client.register_device("dev", transport_key=raw_public_key(key.public_key()), ttl=600)
    client.enable_peer_to_peer("dev", key, settings)
    return client


async def p2p_connect(node: Node, settings: Settings, *, direct: bool) -> dict[str, Any]:
    """Sequential connects between two clients on this host: setup time as the SDK reports
    it (lookup, offer/answer, ICE or relay, QUIC handshake, mutual authentication)."""
    p2p = P2PSettings(stun_server=node.stun, direct=direct)
    label = "direct" if direct else "relay"
    caller = await p2p_client(node.target, f"caller-{label}", p2p)
    callee = await p2p_client(node.target, f"callee-{label}", p2p)
    accepted: asyncio.Queue[PeerConnection] = asyncio.Queue()

    async def accept_all() -> None:
        async for connection in callee.incoming(lambda offer: True):  # the benchmark's caller
            accepted.put_nowait(connection)

    accepting = asyncio.create_task(accept_all())
    async with asyncio.timeout(30):  # offers can reach it now
        await callee.wait_listening()
    setup = hist.new_histogram()
    paths: set[str] = set()
    try:
        for _ in range(settings.connects):
            async with asyncio.timeout(60):
                connection = await caller.connect(callee.handle, "dev")
            hist.record_us(setup, connection.setup_seconds * 1e6)
            paths.add(connection.path)
            async with asyncio.timeout(30):
                other = await accepted.get()
            await connection.close()
            await other.close()
    finally:
        accepting.cancel()
        await caller.close()
        await callee.close()
    return {"path": sorted(paths), **figures(setup)}


# ---------------------------------------------------------------------- run and report


Scenario = Callable[[Node, Settings], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "register_renew": register_renew,
    "keepalive_renew": keepalive_renew,
    "watch_notification_delay": watch_delay,
    "p2p_connect_direct": lambda node, s: p2p_connect(node, s, direct=True),
    "p2p_connect_relay": lambda node, s: p2p_connect(node, s, direct=False),
}


async def run(settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        node = await start_node()  # a fresh node each: no scenario inherits another's state
        try:
            print(f"scenario {name} ...", flush=True)
            results[name] = await scenario(node, settings)
        finally:
            await stop_node(node)
    return results


def markdown(results: dict[str, Any], settings: Settings) -> str:
    def ms(us: float) -> str:
        return f"{us / 1000:.2f}"

    reg = results["register_renew"]
    keep = results["keepalive_renew"]
    watch = results["watch_notification_delay"]
    client, server = watch["client_send_to_event"], watch["server_commit_to_write"]
    lines = [
        "# Scenarios",
        "",
        f"Register/renew: **{reg['per_second']:,.0f} registrations/s** with {reg['concurrency']} "
        f"devices renewing back to back (each a freshly signed record); latency p50 "
        f"{ms(reg['p50_us'])} ms, p99 {ms(reg['p99_us'])} ms, p99.9 {ms(reg['p999_us'])} ms "
        f"({reg['per_second'] * RENEWAL_PERIOD_S:,.0f} devices online per process at a 300 s "
        "TTL renewed at half-life).",
        "",
        f"KeepAlive: **{keep['per_second']:,.0f} renewals/s** with {keep['concurrency']} "
        f"devices keeping their leases alive back to back (no new record); latency p50 "
        f"{ms(keep['p50_us'])} ms, p99 {ms(keep['p99_us'])} ms, p99.9 {ms(keep['p999_us'])} ms: "
        f"**{keep['devices_online_at_300s_ttl']:,.0f} devices online per process** at a 300 s "
        "TTL renewed at half-life.",
        "",
        f"Watch notification delay at {watch['rate_per_second']:.0f} changes/s "
        f"({watch['changes']} changes): writer's send to watcher's event p50 "
        f"{ms(client['p50_us'])} ms, p99 {ms(client['p99_us'])} ms, p99.9 "
        f"{ms(client['p999_us'])} ms; the server's commit-to-write histogram: mean "
        f"{ms(server['mean_us'])} ms, p99 at most {ms(server['p99_at_most_us'])} ms.",
        "",
        "| P2P connect (loopback) | path | connects | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("p2p_connect_direct", "p2p_connect_relay"):
        r = results[name]
        lines.append(
            f"| {name.removeprefix('p2p_connect_')} | {', '.join(r['path'])} | {r['count']} | "
            f"{ms(r['p50_us'])} | {ms(r['p90_us'])} | {ms(r['p99_us'])} | {ms(r['max_us'])} |"
        )
    lines += ["", f"Settings: `{dataclasses.asdict(settings)}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: seconds, tiny counts")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    settings = (
        Settings(seconds=1.0, register_concurrency=4, watch_changes=50, watch_rate=100, connects=2)
        if args.quick
        else Settings()
    )
    results = asyncio.run(run(settings))
    document = {"settings": dataclasses.asdict(settings), "results": results}
    save_run(args.out, "scenarios", document, markdown(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
