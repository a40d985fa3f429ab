"""The node's admin socket: ``supernode status`` (one node) and ``supernode backup`` ask it.

Why a unix socket in the data directory (``<data_dir>/admin.sock``, mode 0600) rather than
a network port:

- **Access control without secrets.** A backup writes files where it is told and status
  shows the data directory and counts, so only the node's operator may ask. Whoever can
  open a 0600 socket in the data directory can read the store itself; the file system is
  the check, as for Docker's and containerd's sockets. No token to hand out, no certificate.
- **TLS needs no special case.** The public port may serve TLS (a CA, pins) or plaintext;
  the socket is the same either way.
- **--workers.** The public port is shared by every process of the node (SO_REUSEPORT), so
  an admin call there would land on any of them; only the primary owns the store (and can
  checkpoint it), and only the primary binds the socket.
- **Metrics port.** It may be open to a scraper on the network, and another concern owns it.

The cost: status is read on the node's machine (over ``ssh`` from elsewhere, like
``consul info``); the cluster-wide view comes from etcd (``supernode status
--etcd-endpoints``), which every node reports into.

Calls are gRPC (:mod:`supernode.internal.v1.admin_pb2`): typed, and the node already runs
gRPC servers. The socket path must fit ``sun_path`` (107 bytes); a longer data directory
path leaves the node without an admin socket, with a WARNING saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from supernode import __version__, transport
from supernode.internal.v1 import admin_pb2 as pb
from supernode.ops.backup import BackupError, Manifest, take_backup

if TYPE_CHECKING:  # the node that assembles this; only its attributes are read
    from supernode.cluster.member import ClusterMember
    from supernode.server import Supernode

log = logging.getLogger("supernode")

SOCKET_NAME = "admin.sock"
SERVICE = "supernode.internal.v1.AdminService"
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, one of them the terminating NUL


def admin_socket(data_dir: Path) -> Path:
    """Where the node whose data directory is ``data_dir`` serves its admin calls."""
    return data_dir.absolute() / SOCKET_NAME


def disk_bytes(root: Path) -> int:
    """Bytes of every regular file under ``root`` (the data directory on disk, workers'
    secondaries included). Files vanishing meanwhile (compaction) are skipped."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def node_status(node: Supernode, started_at_ms: int) -> pb.NodeStatusResponse:
    """A snapshot of the running node, read from its parts (nothing is kept in step)."""
    settings = node.config.server
    store, presence, hub = node.store, node.presence, node.hub
    data_dir = settings.data_dir.absolute()
    host = settings.listen.rpartition(":")[0]
    metrics_host = settings.metrics_listen.rpartition(":")[0]
    health = "serving"
    if node.stopping:
        health = "stopping"
    elif node.cluster is not None and not node.cluster.etcd_reachable:
        health = "degraded"
    response = pb.NodeStatusResponse(
        node=node.node_name,
        version=__version__,
        pid=os.getpid(),
        started_at_ms=started_at_ms,
        grpc=f"{host}:{node.grpc_port}",
        metrics=f"{metrics_host}:{node.metrics_port}",
        stun=f"{settings.stun_listen.rpartition(':')[0]}:{node.stun_port}"
        if settings.stun_listen
        else "",
        tls=node.tls is not None,
        workers=[
            pb.WorkerStatus(pid=int(worker["pid"]), metrics=str(worker["metrics"]))
            for worker in node.worker_info()
        ],
        data_dir=str(data_dir),
        store_size_bytes=0 if store is None or store.closed else store.size_bytes(),
        store_sequence=0 if store is None or store.closed else store.sequence(),
        disk_bytes=disk_bytes(data_dir),
        accounts=node.account_count(),
        devices_online=0 if presence is None else presence.online,
        watchers=0 if hub is None else hub.watchers,
        listeners=0 if node.switchboard is None else node.switchboard.listening,
        relay_sessions=0 if node.relay is None else node.relay.sessions,
        health=health,
    )
    if node.cluster is not None:
        response.cluster.CopyFrom(_cluster_status(node.cluster, node.peer_address))
    return response


def _cluster_status(member: ClusterMember, peer: str) -> pb.ClusterStatus:
    view, placement = member.view, member.view.placement
    return pb.ClusterStatus(
        etcd_endpoints=list(member.config.cluster.endpoints),
        etcd_reachable=member.etcd_reachable,
        controller=member.membership.is_controller,
        placement_epoch=0 if placement is None else placement.epoch,
        partitions_owned=0 if placement is None else len(placement.owned_by(member.name)),
        partitions_held=0 if placement is None else len(placement.partitions_of(member.name)),
        nodes_up=sum(1 for name in view.nodes if name in view.members),
        nodes_total=len(view.nodes),
        mirror_revision=view.revision,
        mirror_lag_revisions=max(0, member.latest_revision - view.revision),
        hints_pending=0 if member.hints is None else member.hints.total,
        peer=peer,
    )


Backup = Callable[[Path], Awaitable[Manifest]]


def admin_handlers(
    status: Callable[[], pb.NodeStatusResponse], backup: Backup
) -> dict[str, grpc.RpcMethodHandler]:
    """The AdminService's methods (bytes in, bytes out, as the node's other private services)."""

    async def node_status_call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return status().SerializeToString()

    async def backup_call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        directory = Path(pb.BackupRequest.FromString(request).directory)
        try:
            manifest = await backup(directory)
        except BackupError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        log.info("backup written to %s (sequence %d)", directory, manifest.sequence)
        return pb.BackupResponse(
            directory=str(directory),
            sequence=manifest.sequence,
            bytes=manifest.total_bytes,
            files=len(manifest.files),
            created_at_ms=manifest.created_at_ms,
        ).SerializeToString()

    return {
        "NodeStatus": grpc.unary_unary_rpc_method_handler(node_status_call),
        "Backup": grpc.unary_unary_rpc_method_handler(backup_call),
    }


class AdminServer:
    """The running admin socket. :meth:`stop` waits for a backup in progress, so the store
    is never closed under a checkpoint (the thread taking it cannot be cancelled)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.backups: set[asyncio.Future[Manifest]] = set()

    async def stop(self) -> None:
        await self._server.stop(1.0)
        await asyncio.gather(*self.backups, return_exceptions=True)


async def start_admin_server(node: Supernode) -> AdminServer | None:
    """Serve the admin socket of ``node`` (its primary process), or log why not."""
    path = admin_socket(node.config.server.data_dir)
    if len(str(path)) > _MAX_SOCKET_PATH:
        log.warning(
            "no admin socket: %s is longer than a unix socket path may be (%d bytes); "
            "`supernode status --data-dir` and `backup` will not reach this node",
            path,
            _MAX_SOCKET_PATH,
        )
        return None
    started_at_ms = int(time.time() * 1000)
    store = node.store
    assert store is not None
    path.unlink(missing_ok=True)  # a socket file left by a node that was killed
    server = transport.new_admin_server(str(path))
    admin = AdminServer(server)

    async def backup(directory: Path) -> Manifest:
        taking = asyncio.ensure_future(
            asyncio.to_thread(
                take_backup, store, directory, node=node.node_name, version=__version__
            )
        )
        admin.backups.add(taking)
        taking.add_done_callback(admin.backups.discard)
        return await asyncio.shield(taking)  # a cancelled call leaves the thread to finish

    handlers = admin_handlers(lambda: node_status(node, started_at_ms), backup)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    await server.start()
    return admin
