"""An SDK peer for the path-loss tests, run inside a lab namespace, driven by JSON lines.

    python -m tests.nat.path_peer callee TARGET STUN HANDLE
    python -m tests.nat.path_peer caller TARGET STUN HANDLE PEER

Both roles set up one connection (the caller on ``{"op": "connect"}``), answer every
stream the peer opens with its bytes reversed, and then take commands on stdin, one
answer line each:

- ``{"op": "path"}``: the current path and every path change so far (loop clock, which is
  ``time.monotonic()``, the same CLOCK_MONOTONIC the test reads in the root namespace).
- ``{"op": "stream", "bytes": N}``: open a stream, send N bytes, wait (bounded) for the
  reversed answer; reports whether it came, how long it took and the path meanwhile.
- ``{"op": "close"}``: close the connection and exit.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from typing import Any

from client_sdk import Client, PeerConnection
from client_sdk.p2p.path_policy import PathChange
from tests.nat.sdk_peer import start

STREAM_TIMEOUT = 45.0


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def change_fields(change: PathChange) -> dict[str, Any]:
    return {
        "at": change.at,
        "old": None if change.old is None else change.old.value,
        "new": None if change.new is None else change.new.value,
        "reason": change.reason.value,
        "waited": change.waited_seconds,
    }


async def echo_streams(connection: PeerConnection) -> None:
    while True:
        reader, writer = await connection.accept_stream()
        writer.write((await reader.read())[::-1])
        writer.write_eof()


async def stream(connection: PeerConnection, size: int) -> dict[str, Any]:
    payload = secrets.token_bytes(size)
    started = time.monotonic()
    reader, writer = connection.open_stream()
    writer.write(payload)
    writer.write_eof()
    try:
        async with asyncio.timeout(STREAM_TIMEOUT):
            answer = await reader.read()
    except (TimeoutError, ConnectionError) as exc:
        return {"ok": False, "error": repr(exc), "path": connection.path}
    return {
        "ok": answer == payload[::-1],
        "seconds": round(time.monotonic() - started, 3),
        "path": connection.path,
    }


async def serve(connection: PeerConnection) -> None:
    """Run commands until ``close`` (or stdin ends)."""
    echo = asyncio.create_task(echo_streams(connection))
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            op = command["op"]
            if op == "path":
                say(op=op, path=connection.path,
                    changes=[change_fields(c) for c in connection.path_changes])  # fmt: skip
            elif op == "stream":
                say(op=op, **await stream(connection, int(command["bytes"])))
            elif op == "close":
                await connection.close()
                say(op=op)
                return
    finally:
        echo.cancel()


async def next_command(expected: str) -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    assert json.loads(line)["op"] == expected, line


async def main(role: str, target: str, stun: str, handle: str, peer: str = "") -> None:
    client: Client
    async with await start(target, stun, handle) as client:
        if role == "callee":
            say(event="listening")
            connection = await anext(aiter(client.incoming(accept=lambda offer: True)))
        else:
            say(event="registered")
            await next_command("connect")
            connection = await client.connect(peer, "dev")
        say(event="connected", path=connection.path)
        await serve(connection)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
