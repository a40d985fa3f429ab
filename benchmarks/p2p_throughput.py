"""Peer-to-peer throughput: one SDK connection moving a payload on one stream, direct and
through the relay, with both peers in this process and with the callee in another one,
against a real ``supernode serve --tls-plaintext`` on loopback.

    python -m benchmarks.p2p_throughput [--mib 32] [--paths direct,relay]
        [--placements one-process,two-processes] [--rounds 1] [--uvloop] [--out DIR]

The caller writes ``--mib`` MiB of random bytes on one stream (``await drain()`` after
each 64 KiB write, as an app would) and ends it; the callee hashes what it reads and
answers with the SHA-256 on the same stream. A transfer counts only if that digest is the
payload's. MB/s (10^6 bytes per second) is the payload over the time from the first write
to the digest's arrival; CPU is reported per CPU-second of the peers (steadier than MB/s
on a shared machine) and, for the supernode, per MB (what relaying costs it). The relay's
per-session limits are raised for the run (its default of 4 MiB/s per session is an
operator's policy, not the machinery's capacity).
Writes ``p2p_throughput.json`` and ``.md`` into ``DIR/<timestamp>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.procstat import cpu_seconds
from benchmarks.report import RESULTS_DIR, save_run
from benchmarks.scenarios import Node, p2p_client, start_node, stop_node
from benchmarks.systems.process import ServerProcess
from client_sdk import Client, P2PSettings, PeerConnection

T = TypeVar("T")
MIB = 1 << 20
CHUNK = 64 << 10
PATHS = ("direct", "relay")
PLACEMENTS = ("one-process", "two-processes")
# The relay's per-session limits for the run: far above what one connection can move.
RELAY_UNLIMITED = (
    "--limits-relay-max-bytes-per-second", str(1 << 30),
    "--limits-relay-max-bytes", str(1 << 40),
)  # fmt: skip
_CALLEE_READY = re.compile(r"callee listening (\S+)")
_CALLEE_CPU = re.compile(r"callee cpu ([0-9.]+)")
_WITHIN_S = 60.0
_SERIAL = itertools.count()


@dataclasses.dataclass(frozen=True)
class Transfer:
    path: str
    placement: str
    bytes: int
    seconds: float
    setup_seconds: float
    # CPU seconds both peers spent during the transfer (this process, plus the callee's
    # process when it has one): steadier than MB/s on a machine shared with other work.
    cpu_seconds: float
    # CPU seconds of the supernode meanwhile: the relay's cost (only keepalives when direct).
    server_cpu_seconds: float

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def mb_per_cpu_second(self) -> float:
        return self.bytes / self.cpu_seconds / 1e6

    @property
    def server_cpu_ms_per_mb(self) -> float:
        return self.server_cpu_seconds * 1000 / (self.bytes / 1e6)


# ---------------------------------------------------------------------- the two ends


async def send_payload(connection: PeerConnection, payload: bytes) -> tuple[float, float]:
    """Write ``payload`` on a new stream: seconds until the callee's matching digest, and
    the CPU seconds this process spent meanwhile."""
    reader, writer = connection.open_stream()
    started = time.perf_counter()
    cpu_started = time.process_time()
    view = memoryview(payload)
    for offset in range(0, len(payload), CHUNK):
        writer.write(bytes(view[offset : offset + CHUNK]))
        await writer.drain()
    writer.write_eof()
    async with asyncio.timeout(_WITHIN_S):
        digest = await reader.read()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if digest != hashlib.sha256(payload).digest():
        raise RuntimeError(f"{connection.path}: the callee's SHA-256 is not the payload's")
    return elapsed, cpu


async def receive_payload(connection: PeerConnection) -> float:
    """Hash one incoming stream to its end and answer with the digest; the CPU seconds
    this process spent from the stream's arrival to the answer."""
    async with asyncio.timeout(_WITHIN_S):
        reader, writer = await connection.accept_stream()
    cpu_started = time.process_time()
    digest = hashlib.sha256()
    received = 0
    async with asyncio.timeout(_WITHIN_S):
        while chunk := await reader.read(CHUNK):
            digest.update(chunk)
            received += len(chunk)
    writer.write(digest.digest())
    writer.write_eof()
    await writer.drain()
    return time.process_time() - cpu_started


def _settings(node_stun: tuple[str, int], path: str) -> P2PSettings:
    return P2PSettings(stun_server=node_stun, direct=path == "direct")


async def _first_connection(callee: Client) -> PeerConnection:
    async for connection in callee.incoming(lambda offer: True):  # the benchmark's caller
        return connection
    raise RuntimeError("the callee stopped listening")


# ---------------------------------------------------------------------- one run


async def transfer_one_process(node: Node, path: str, payload: bytes) -> Transfer:
    settings = _settings(node.stun, path)
    serial = next(_SERIAL)  # new accounts for each transfer: rounds share the node
    caller = await p2p_client(node.target, f"tx{serial}-{path}-caller", settings)
    callee = await p2p_client(node.target, f"tx{serial}-{path}-callee", settings)
    try:
        accepting = asyncio.create_task(_first_connection(callee))
        async with asyncio.timeout(_WITHIN_S):
            await callee.wait_listening()
            connection = await caller.connect(callee.handle, "dev")
            other = await accepting
        receiving = asyncio.create_task(receive_payload(other))
        server_cpu = cpu_seconds(node.process.pid)
        seconds, cpu = await send_payload(connection, payload)
        server_cpu = cpu_seconds(node.process.pid) - server_cpu
        await receiving
        _check_path(connection, path)
        await connection.close()
        await other.close()
        return Transfer(
            path, "one-process", len(payload), seconds, connection.setup_seconds, cpu, server_cpu
        )
    finally:
        await caller.close()
        await callee.close()


async def transfer_two_processes(
    node: Node, path: str, payload: bytes, *, uvloop: bool = False
) -> Transfer:
    """The callee in its own Python process (``--callee``), so each peer has a core."""
    serial = next(_SERIAL)
    handle = f"tx{serial}-{path}-remote-callee"
    stun = f"{node.stun[0]}:{node.stun[1]}"
    callee = ServerProcess(
        [sys.executable, "-m", "benchmarks.p2p_throughput", "--callee", node.target, stun,
         handle, path, *(["--uvloop"] if uvloop else [])],
        _CALLEE_READY,
        stream="stdout",
    )  # fmt: skip
    caller = await p2p_client(node.target, f"tx{serial}-{path}-caller", _settings(node.stun, path))
    try:
        await callee.wait_ready(_WITHIN_S)
        async with asyncio.timeout(_WITHIN_S):
            connection = await caller.connect(handle, "dev")
        server_cpu = cpu_seconds(node.process.pid)
        seconds, cpu = await send_payload(connection, payload)
        server_cpu = cpu_seconds(node.process.pid) - server_cpu
        _check_path(connection, path)
        await connection.close()
        callee_cpu = await _callee_cpu(callee)
        return Transfer(
            path, "two-processes", len(payload), seconds, connection.setup_seconds,
            cpu + callee_cpu, server_cpu,
        )  # fmt: skip
    finally:
        await caller.close()
        await callee.stop()


async def _callee_cpu(callee: ServerProcess) -> float:
    """The CPU seconds the callee process reported for its side of the transfer."""
    deadline = time.monotonic() + _WITHIN_S
    while time.monotonic() < deadline:
        if found := _CALLEE_CPU.search(callee.tail()):
            return float(found.group(1))
        await asyncio.sleep(0.01)
    raise RuntimeError(f"the callee reported no CPU time; last output:\n{callee.tail()}")


def _check_path(connection: PeerConnection, path: str) -> None:
    if connection.path != path:
        raise RuntimeError(f"asked for {path}, the connection ended up on {connection.path}")


async def serve_callee(target: str, stun: str, handle: str, path: str) -> None:
    """The two-process callee: register, listen, take one connection, hash one stream."""
    host, port = stun.rsplit(":", 1)
    callee = await p2p_client(target, handle, _settings((host, int(port)), path))
    try:
        accepting = asyncio.create_task(_first_connection(callee))
        async with asyncio.timeout(_WITHIN_S):
            await callee.wait_listening()
        print(f"callee listening {handle}", flush=True)
        async with asyncio.timeout(_WITHIN_S):
            connection = await accepting
        cpu = await receive_payload(connection)
        print(f"callee cpu {cpu:.6f}", flush=True)
        async with asyncio.timeout(_WITHIN_S):
            await connection.wait_closed()
    finally:
        await callee.close()


# ---------------------------------------------------------------------- run and report


@dataclasses.dataclass(frozen=True)
class Settings:
    mib: int = 32
    paths: tuple[str, ...] = PATHS
    placements: tuple[str, ...] = PLACEMENTS
    rounds: int = 1
    uvloop: bool = False  # the app's choice of event loop, for both peers


async def run(settings: Settings) -> list[Transfer]:
    payload = os.urandom(settings.mib * MIB)
    node = await start_node(RELAY_UNLIMITED)
    transfers: list[Transfer] = []
    try:
        for _ in range(settings.rounds):  # interleaved, so that rounds compare within a run
            for placement in settings.placements:
                for path in settings.paths:
                    if placement == "one-process":
                        transfer = await transfer_one_process(node, path, payload)
                    else:
                        transfer = await transfer_two_processes(
                            node, path, payload, uvloop=settings.uvloop
                        )
                    print(
                        f"{path:6} {placement:13} {transfer.mb_per_second:6.1f} MB/s "
                        f"{transfer.mb_per_cpu_second:6.1f} MB/CPU-s",
                        flush=True,
                    )
                    transfers.append(transfer)
    finally:
        await stop_node(node)
    return transfers


def markdown(transfers: list[Transfer], settings: Settings) -> str:
    lines = [
        "# Peer-to-peer throughput (loopback)",
        "",
        f"{settings.mib} MiB on one stream per transfer, SHA-256 checked by the callee.",
        "",
        "| path | peers | MB/s | seconds | MB per peers' CPU-second | supernode CPU ms/MB "
        "| setup ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in transfers:
        lines.append(
            f"| {t.path} | {t.placement} | {t.mb_per_second:.1f} | {t.seconds:.2f} | "
            f"{t.mb_per_cpu_second:.1f} | {t.server_cpu_ms_per_mb:.1f} | "
            f"{t.setup_seconds * 1000:.0f} |"
        )
    return "\n".join([*lines, ""])


def _runner(*, uvloop: bool) -> Callable[[Coroutine[Any, Any, T]], T]:
    if not uvloop:
        return asyncio.run
    import uvloop as uv  # a dependency of the server; imported only when asked for

    return uv.run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--placements", default=",".join(PLACEMENTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run the peers on uvloop")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--callee", nargs=4, metavar=("TARGET", "STUN", "HANDLE", "PATH"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    run_loop = _runner(uvloop=args.uvloop)
    if args.callee:
        run_loop(serve_callee(*args.callee))
        return 0
    paths = tuple(args.paths.split(","))
    placements = tuple(args.placements.split(","))
    for name, chosen, known in (
        ("--paths", paths, PATHS),
        ("--placements", placements, PLACEMENTS),
    ):
        if not set(chosen) <= set(known):
            parser.error(f"{name}: choose from {', '.join(known)}")
    if args.mib < 1 or args.rounds < 1:
        parser.error("--mib and --rounds: at least 1")
    settings = Settings(args.mib, paths, placements, args.rounds, args.uvloop)
    transfers = run_loop(run(settings))
    figures: list[dict[str, Any]] = [
        {
            **dataclasses.asdict(t),
            "mb_per_second": t.mb_per_second,
            "mb_per_cpu_second": t.mb_per_cpu_second,
        }
        for t in transfers
    ]
    document = {"settings": dataclasses.asdict(settings), "transfers": figures}
    save_run(args.out, "p2p_throughput", document, markdown(transfers, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
