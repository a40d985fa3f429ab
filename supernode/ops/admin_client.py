"""The command-line end of the admin socket (:mod:`supernode.ops.admin`): one call each for
``status --data-dir`` and ``backup``, with errors an operator can act on."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from supernode import transport
from supernode.internal.v1 import admin_pb2 as pb
from supernode.ops.admin import SERVICE, admin_socket


class AdminError(Exception):
    """The node could not be asked, or refused; the message is the line to print.
    ``refused``: the node said the request was wrong (exit code 2, not 1)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def socket_of(data_dir: Path | None, socket: Path | None) -> Path:
    if socket is not None:
        return socket.absolute()
    assert data_dir is not None
    return admin_socket(data_dir)


def _call(socket: Path, method: str, request: bytes, timeout_s: float) -> bytes:
    if not socket.exists():
        raise AdminError(
            f"no node is serving at {socket.parent}: no admin socket {socket} (is the node "
            "running, with this --data-dir?)"
        )
    if not os.access(socket, os.R_OK | os.W_OK):
        raise AdminError(f"permission denied on {socket}: run as the node's user (or root)")
    with transport.open_admin(str(socket)) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            answer: bytes = call(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details: str = exc.details()
            if code is grpc.StatusCode.UNAVAILABLE:
                raise AdminError(
                    f"the node at {socket} does not answer (stopped? a socket left by a "
                    f"killed node?): {details}"
                ) from exc
            refused = code is grpc.StatusCode.FAILED_PRECONDITION
            raise AdminError(details, refused=refused) from exc
    return answer


def fetch_status(socket: Path, timeout_s: float = 10.0) -> pb.NodeStatusResponse:
    raw = _call(socket, "NodeStatus", pb.NodeStatusRequest().SerializeToString(), timeout_s)
    return pb.NodeStatusResponse.FromString(raw)


def request_backup(socket: Path, directory: Path, timeout_s: float) -> pb.BackupResponse:
    """Ask the node to write a backup into ``directory`` (made absolute here: the node's
    working directory is not ours)."""
    request = pb.BackupRequest(directory=str(directory.absolute()))
    return pb.BackupResponse.FromString(
        _call(socket, "Backup", request.SerializeToString(), timeout_s)
    )
