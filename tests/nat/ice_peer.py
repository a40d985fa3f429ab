"""One aioice ICE agent, run inside a lab namespace: ``python -m tests.nat.ice_peer``.

It proves the lab supports hole punching with aioice alone, before any SDK code is
involved. Protocol on stdio, one JSON line each:

1. prints ``{"event": "offer", "username", "password", "candidates": [sdp, ...]}``
   after gathering (host + server-reflexive from the STUN server);
2. reads the peer's offer line from stdin;
3. runs the connectivity checks, bounded by ``--timeout``, then exchanges one datagram
   each way over the selected pair and prints ``{"event": "result", "connected": bool,
   "seconds": float, "error": str | null, "remote": [host, port] | null}``.

``aioice.stun.RETRY_MAX`` is lowered to 2 (FINDINGS: a failing check then gives up after
~3.5 s instead of ~63 s, and hole punching still succeeds), and the end of candidates is
signalled, without which ``connect()`` never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aioice
from aioice import stun


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def nominated_remote(connection: aioice.Connection) -> list[Any] | None:
    """The remote address of the selected pair, for diagnostics only.

    aioice has no public accessor for the selected pair; reading the private attribute is
    acceptable in a test program and degrades to None if aioice changes.
    """
    pairs = getattr(connection, "_nominated", {})
    pair = pairs.get(1)
    return list(pair.remote_addr) if pair is not None else None


async def exchange(connection: aioice.Connection, controlling: bool) -> None:
    """One datagram each way over the selected pair: connected means data flows."""
    if controlling:
        await connection.send(b"ping")
        async with asyncio.timeout(10):
            assert await connection.recv() == b"pong"
    else:
        async with asyncio.timeout(10):
            assert await connection.recv() == b"ping"
        await connection.send(b"pong")


async def run(controlling: bool, stun_server: tuple[str, int], connect_timeout: float) -> None:
    stun.RETRY_MAX = 2
    connection = aioice.Connection(
        ice_controlling=controlling, stun_server=stun_server, use_ipv6=False
    )
    try:
        await connection.gather_candidates()
        emit(
            event="offer",
            username=connection.local_username,
            password=connection.local_password,
            candidates=[c.to_sdp() for c in connection.local_candidates],
        )
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        remote = json.loads(line)
        connection.remote_username = remote["username"]
        connection.remote_password = remote["password"]
        for sdp in remote["candidates"]:
            await connection.add_remote_candidate(aioice.Candidate.from_sdp(sdp))
        await connection.add_remote_candidate(None)
        started = time.monotonic()
        try:
            async with asyncio.timeout(connect_timeout):
                await connection.connect()
            await exchange(connection, controlling)
        except (ConnectionError, TimeoutError, AssertionError) as exc:
            emit(event="result", connected=False, error=repr(exc), remote=None,
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip
        else:
            emit(event="result", connected=True, error=None,
                 remote=nominated_remote(connection),
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="ice_peer", description=__doc__.split("\n")[0])
    parser.add_argument("--controlling", action="store_true")
    parser.add_argument("--stun", required=True, help="host:port of the STUN server")
    parser.add_argument("--timeout", type=float, default=20.0, help="bound on connect()")
    args = parser.parse_args()
    host, port = args.stun.rsplit(":", 1)
    asyncio.run(run(args.controlling, (host, int(port)), args.timeout))


if __name__ == "__main__":
    main()
