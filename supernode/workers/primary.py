"""The primary's side: the private replication service and the worker processes it runs.

Workers are started once the primary serves, restarted (after a pause) if one dies, and
stopped before the primary closes its store. Each reports readiness on a pipe with one
JSON line, so the primary's own "ready" means every worker serves too. Each gets the
private socket's secret (``supernode.workers.gate``) as the one line of its stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from supernode.internal.v1 import replication_pb2 as pb
from supernode.startup import StartupError
from supernode.store import Store
from supernode.workers.feed import ChangeFeed

log = logging.getLogger("supernode.workers")

REPLICATION_SERVICE = "supernode.internal.v1.ReplicationService"
_READY_TIMEOUT_S = 120.0  # opening a secondary of a large store replays its manifest
_RESTART_PAUSE_S = 1.0
_STOP_GRACE_S = 15.0


def private_address() -> str:
    """An abstract unix socket: no file to clean up, no path-length limit, host-local."""
    return f"unix-abstract:supernode-{os.getpid()}-{secrets.token_hex(4)}"


def replication_handlers(feed: ChangeFeed, store: Store) -> dict[str, grpc.RpcMethodHandler]:
    async def follow(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        follower = feed.follow()
        try:
            while True:
                await follower.ready.wait()
                changes = follower.take()
                if changes is not None:
                    yield pb.ViewChanges(
                        sequence=changes.sequence, keys=changes.keys, reset=changes.reset
                    ).SerializeToString()
        finally:
            feed.leave(follower)

    async def sequence(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return pb.SequenceResponse(sequence=store.sequence()).SerializeToString()

    return {
        "Follow": grpc.unary_stream_rpc_method_handler(follow),
        "Sequence": grpc.unary_unary_rpc_method_handler(sequence),
    }


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs besides the node's configuration."""

    index: int
    primary: str  # the private replication/forwarding address
    listen: str  # host:port, the primary's bound public port
    parent_pid: int
    ready_fd: int


class WorkerPool:
    def __init__(
        self,
        count: int,
        settings: dict[str, str],
        primary: str,
        listen: str,
        secret: str,
        *,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self._count = count
        self._on_restart = on_restart
        self._settings = settings  # "section.field" -> value: the node's whole config
        self._primary = primary
        self._listen = listen
        self._secret = secret  # the private socket's (supernode.workers.gate)
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.ready: dict[int, dict[str, Any]] = {}

    async def start(self) -> None:
        for index in range(1, self._count):
            await self._spawn(index)
            self._watchers.append(asyncio.create_task(self._watch(index)))

    async def _spawn(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(index, self._primary, self._listen, os.getpid(), write_fd)
        env = {
            **os.environ,
            "SUPERNODE_WORKER_SPEC": json.dumps(asdict(spec)),
            "SUPERNODE_WORKER_CONFIG": json.dumps(self._settings),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "supernode.workers.worker",
                env=env,
                pass_fds=(write_fd,),
                stdin=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(write_fd)
        self._processes[index] = process
        assert process.stdin is not None
        process.stdin.write(self._secret.encode() + b"\n")  # the one line a worker reads
        with contextlib.suppress(ConnectionError):  # it died at once: the wait says so
            await process.stdin.drain()
        process.stdin.close()
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                line = await asyncio.to_thread(_read_line, read_fd)
        except TimeoutError:
            process.kill()  # also ends the reading thread: the pipe's last writer is gone
            raise
        finally:
            os.close(read_fd)
        if not line:
            raise OSError(f"worker {index} exited before it served (exit {process.returncode})")
        ready = json.loads(line)
        if "error" in ready:  # it could not start, and says which setting is at fault
            raise StartupError(f"worker {index}: {ready['error']}")
        self.ready[index] = ready

    async def _watch(self, index: int) -> None:
        while True:
            code = await self._processes[index].wait()
            if self._stopping:
                return
            self._on_restart()
            log.warning("worker %d exited with %s; restarting it", index, code)
            await asyncio.sleep(_RESTART_PAUSE_S)
            try:
                await self._spawn(index)
            except (OSError, TimeoutError, ValueError, StartupError) as exc:
                log.error("worker %d did not restart: %s", index, exc)

    async def stop(self) -> None:
        """SIGTERM every worker (each drains its calls), SIGKILL what outlives the grace."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        processes = [p for p in self._processes.values() if p.returncode is None]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def _read_line(fd: int) -> str:
    with os.fdopen(os.dup(fd), "rb", buffering=0) as pipe:
        data = b""
        while not data.endswith(b"\n"):
            chunk = pipe.read(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()
