"""A worker process: serves lookups from a secondary of the primary's store, forwards the
rest to the primary, follows the primary's change feed. Started by the primary
(:class:`supernode.workers.primary.WorkerPool`), never by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import time

import grpc

from supernode import transport
from supernode.config import Config, load, split_host_port
from supernode.internal.v1 import replication_pb2 as pb
from supernode.internal.v1 import replication_pb2_grpc as rpc
from supernode.logs import configure_logging
from supernode.loop_lag import sample_loop_lag
from supernode.metrics import Metrics
from supernode.node import (
    PUBLIC_SERVICES,
    add_standard_services,
    build_directory,
    build_rate_gates,
    build_shedding,
    local_token_secret,
    mark_serving,
    open_store,
)
from supernode.revocations import Revocations
from supernode.rpc.directory import (
    ACCOUNT_SERVICE,
    PRESENCE_SERVICE,
    SESSION_SERVICE,
    DirectoryApi,
)
from supernode.rpc.handlers import register_services
from supernode.startup import StartupError, binding
from supernode.store import REVOCATIONS_CHANGED, Store
from supernode.tls import node_tls
from supernode.workers.gate import secret_metadata
from supernode.workers.primary import WorkerSpec
from supernode.workers.proxy import Forwarder

log = logging.getLogger("supernode.worker")

# Answered here; every other public method goes to the primary.
LOCAL_METHODS = {
    PRESENCE_SERVICE: ("Lookup", "LookupMany"),
    ACCOUNT_SERVICE: ("GetAccount",),
}
# Forwarded calls that change what lookups (or the token checks before them) see: answered
# once this worker caught up, so a client's next call here sees its write, its logout too.
WRITES = frozenset(
    {
        f"/{ACCOUNT_SERVICE}/CreateAccount",
        f"/{ACCOUNT_SERVICE}/SetPrivacy",
        f"/{ACCOUNT_SERVICE}/RotateKey",
        f"/{PRESENCE_SERVICE}/RegisterDevice",
        f"/{PRESENCE_SERVICE}/UnregisterDevice",
        f"/{PRESENCE_SERVICE}/KeepAlive",
        f"/{SESSION_SERVICE}/Logout",
        f"/{SESSION_SERVICE}/RevokeSessions",
    }
)
_CATCH_UP_WAIT_S = 2.0
_PRIMARY_LOST_S = 5.0  # no feed for this long: the primary is gone, and so is this worker
_PR_SET_PDEATHSIG = 1


class FeedApplier:
    """Applies the primary's change feed to the secondary store, and reloads the revoked
    sessions when a batch says they changed (the primary's Logout, RevokeSessions)."""

    def __init__(
        self,
        store: Store,
        stub: rpc.ReplicationServiceStub,
        secret: str,
        revocations: Revocations,
    ) -> None:
        self._store = store
        self._stub = stub
        self._auth = secret_metadata(secret)
        self._revocations = revocations
        self.applied = 0
        self._advanced = asyncio.Condition()
        self.lost = asyncio.Event()

    async def run(self, first: asyncio.Future[None]) -> None:
        last_contact = time.monotonic()
        while True:
            try:
                async for changes in self._stub.Follow(pb.FollowRequest(), metadata=self._auth):
                    self._store.catch_up(None if changes.reset else list(changes.keys))
                    if changes.reset or REVOCATIONS_CHANGED in changes.keys:
                        self._revocations.replace(self._store.revocations())
                    async with self._advanced:
                        self.applied = max(self.applied, changes.sequence)
                        self._advanced.notify_all()
                    last_contact = time.monotonic()
                    if not first.done():
                        first.set_result(None)
            except grpc.aio.AioRpcError as exc:
                log.warning("change feed: %s %s", exc.code().name, exc.details())
            if time.monotonic() - last_contact > _PRIMARY_LOST_S:
                self.lost.set()
                return
            await asyncio.sleep(0.2)

    async def caught_up(self, method: str) -> None:
        """After a forwarded write: wait until this worker has applied it."""
        if method not in WRITES:
            return
        try:
            reply = await self._stub.Sequence(pb.SequenceRequest(), metadata=self._auth)
        except grpc.aio.AioRpcError as exc:
            # The primary answered the write (it is durable) and is gone now: the answer
            # stands; this worker exits soon (``lost``) rather than serve stale reads.
            log.warning("after %s: the primary did not answer (%s)", method, exc.code().name)
            return
        target = reply.sequence
        try:
            async with self._advanced, asyncio.timeout(_CATCH_UP_WAIT_S):
                await self._advanced.wait_for(lambda: self.applied >= target)
        except TimeoutError:  # the feed lags: catch up directly, dropping the whole cache
            self._store.catch_up(None)


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the primary died before the line above
        sys.exit(1)


async def run(config: Config, spec: WorkerSpec, secret: str) -> None:
    settings = config.server
    secondary_dir = settings.data_dir / "workers" / str(spec.index)
    shutil.rmtree(secondary_dir, ignore_errors=True)
    store = open_store(config, secondary_dir=secondary_dir)
    channel = transport.open_upstream(spec.primary)
    stub = rpc.ReplicationServiceStub(channel)  # type: ignore[no-untyped-call]
    revocations = Revocations()
    revocations.replace(store.revocations())
    follower = FeedApplier(store, stub, secret, revocations)
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    following = asyncio.create_task(follower.run(first))
    async with asyncio.timeout(30):  # caught up once before serving anything
        await first

    metrics = Metrics()
    # Gates the lookups answered here; forwarded calls are gated by the primary, which
    # does their work (its refusal and retry trailer come back through the proxy).
    shedding = build_shedding(config, metrics)
    lag = asyncio.create_task(
        sample_loop_lag(shedding, metrics.loop_lag_probes.observe), name="loop lag"
    )
    directory = build_directory(
        config,
        store,
        node_name=settings.node_name,
        secret=local_token_secret(store),
        revocations=revocations,
    )
    # Limits the lookups answered here, by the client's address; forwarded calls are
    # limited by the primary, which sees that address in the forwarded metadata.
    gates = build_rate_gates(config, metrics)
    handlers = DirectoryApi(
        directory.accounts,
        directory.presence,
        directory.sessions,
        metrics,
        shedding,
        gates=gates,
        privacy=directory.privacy,
    ).method_handlers()
    local = {
        service: {name: handlers[service][name] for name in names}
        for service, names in LOCAL_METHODS.items()
    }
    forwarded = Forwarder(channel, follower.caught_up, secret).handlers(
        method
        for service in PUBLIC_SERVICES
        for method in service.methods
        if method.name not in LOCAL_METHODS.get(service.full_name, ())
    )
    server = transport.new_server(config, reuse_port=True)
    registered = register_services(server, forwarded, local)
    health_servicer = add_standard_services(server, registered)
    # The primary's own settings (as_flags), so the same certificate or the same explicit
    # plaintext: a client cannot tell which process of the node answered.
    transport.bind_public(server, spec.listen, f"worker {spec.index}", node_tls(config))
    await server.start()
    await mark_serving(health_servicer, registered)
    metrics_host, metrics_port = split_host_port(settings.metrics_listen, "metrics_listen")
    metrics_at = f"{metrics_host}:{metrics_port and metrics_port + spec.index}"
    try:
        with binding(f"server.metrics_listen +{spec.index}, worker {spec.index}'s", metrics_at):
            bound_metrics = metrics.serve_http(metrics_host, int(metrics_at.rpartition(":")[2]))
    except StartupError:
        await server.stop(None)  # not left for the loop's close (a traceback at exit)
        raise
    metrics.not_ready = None
    ready = {"pid": os.getpid(), "worker": spec.index, "metrics": f"{metrics_host}:{bound_metrics}"}
    log.info("supernode worker ready %s", json.dumps(ready), extra=ready)
    os.write(spec.ready_fd, json.dumps(ready).encode() + b"\n")
    os.close(spec.ready_fd)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    lost = asyncio.create_task(follower.lost.wait())
    await asyncio.wait({lost, asyncio.create_task(stopping.wait())}, return_when="FIRST_COMPLETED")
    if follower.lost.is_set():
        log.error("worker %d: lost the primary; exiting", spec.index)
    metrics.not_ready = "draining"
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.shutdown_grace_seconds)
    for task in (following, lag):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await channel.close()
    metrics.stop_http()
    store.close()


def main() -> int:
    # The private socket's secret: the one line the primary writes to our stdin.
    secret = sys.stdin.readline().strip()
    sys.stdin.close()
    if not secret:
        print("supernode worker: started without the primary's secret", file=sys.stderr)
        return 2
    spec = WorkerSpec(**json.loads(os.environ["SUPERNODE_WORKER_SPEC"]))
    _die_with_parent(spec.parent_pid)
    config = load(environ={}, flags=json.loads(os.environ["SUPERNODE_WORKER_CONFIG"]))
    configure_logging(config.server.log_format, config.server.log_level, worker=spec.index)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(run(config, spec, secret))
    except StartupError as exc:  # raised before "ready": the pipe is still open
        os.write(spec.ready_fd, json.dumps({"error": str(exc)}).encode() + b"\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
