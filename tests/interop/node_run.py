"""One run of the Node.js interop client (interop/node/client.mjs) as a subprocess.

The client prints JSON lines on stdout (``{"step": ...}`` as it goes, ``{"summary": ...}``
at the end) and one line on stderr when it fails; a test reads the lines as they come, so
it can act between the client's steps (register the device the client's watch waits for).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.waiting import within
from tests.interop.npm import NodeClient

LINE_TIMEOUT_S = 20.0


class NodeRun:
    """A running client; ``kill()`` (also on failure) ends it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, client: NodeClient, *args: str) -> NodeRun:
        process = await asyncio.create_subprocess_exec(
            client.node,
            str(client.script),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self, key: str) -> Any:
        """The value of ``key`` in the client's next stdout line; the client's stderr if it
        ended instead."""
        assert self.process.stdout is not None
        raw = await within(self.process.stdout.readline(), LINE_TIMEOUT_S)
        if not raw:
            code, error = await self.finish()
            raise AssertionError(f"node client ended ({code}) before {key!r}: {error}")
        message = json.loads(raw)
        assert key in message, f"expected {key!r} from the node client, got {message}"
        return message[key]

    async def finish(self) -> tuple[int, str]:
        """Wait for the exit: its code and stderr."""
        assert self.process.stderr is not None
        error = await within(self.process.stderr.read(), LINE_TIMEOUT_S)
        code = await within(self.process.wait(), LINE_TIMEOUT_S)
        return code, error.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def run_to_end(client: NodeClient, *args: str) -> tuple[int, str, str]:
    """Run the client to its exit: exit code, stdout, stderr."""
    run = await NodeRun.start(client, *args)
    try:
        out, error = await within(run.process.communicate(), LINE_TIMEOUT_S)
    finally:
        run.kill()
    assert run.process.returncode is not None
    return run.process.returncode, out.decode(), error.decode()
