"""Start-up failures as one line that names the setting and says what to do.

Everything a node binds or opens at start-up (its gRPC, metrics, STUN and peer ports, its
data directory, the workers' private socket and processes, etcd) fails in its own way:
grpcio raises a bare ``RuntimeError`` without the reason, the metrics server an ``OSError``
without the address, RocksDB a text about its LOCK file. Each is turned here into a
:class:`StartupError` whose message starts with the setting (``server.listen (--listen,
SUPERNODE_LISTEN)``), and the command line prints it as one line with exit code 2.

:func:`preflight` checks every port and the data directory before anything is opened, so
a refused start leaves nothing half-started behind (and grpcio's own log line about a
failed bind is never printed); the guards around the real binds cover the race between
the check and the bind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from supernode.config import Config, env_name, flag_name, split_host_port


class StartupError(Exception):
    """The node cannot start; the message names the setting and says what to do."""


def label(setting: str) -> str:
    """``server.listen`` -> ``server.listen (--listen, SUPERNODE_LISTEN)``: every way to set
    it. A suffix after a space (``server.metrics_listen +1``) is kept as it is."""
    dotted, _, suffix = setting.partition(" ")
    section, _, name = dotted.partition(".")
    ways = f"{dotted} ({flag_name(section, name)}, {env_name(section, name)})"
    return f"{ways} {suffix}" if suffix else ways


_BIND_REASONS = {
    errno.EADDRINUSE: (
        "address already in use by another process (another supernode?): stop it, or "
        "give this node another port"
    ),
    errno.EADDRNOTAVAIL: (
        "not an address of this host: use one of its interfaces' addresses, or 0.0.0.0"
    ),
    errno.EACCES: (
        "permission denied: a port below 1024 needs root or CAP_NET_BIND_SERVICE; "
        "choose a port from 1024 up"
    ),
}


def bind_failure(setting: str, address: str, exc: OSError) -> StartupError:
    reason = _BIND_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return StartupError(f"{label(setting)}: cannot bind {address}: {reason}")


@contextlib.contextmanager
def binding(setting: str, address: str) -> Iterator[None]:
    """Around a bind of ``address``: its failure becomes a StartupError naming ``setting``."""
    try:
        yield
    except StartupError:
        raise
    except OSError as exc:
        raise bind_failure(setting, address, exc) from exc


@contextlib.contextmanager
def starting(setting: str, remedy: str = "") -> Iterator[None]:
    """Around a start-up step ruled by ``setting`` (joining etcd, starting workers)."""
    try:
        yield
    except StartupError:
        raise
    except (OSError, TimeoutError) as exc:
        said = f"{label(setting)}: {exc or type(exc).__name__}"
        raise StartupError(f"{said}; {remedy}" if remedy else said) from exc


def probe_port(setting: str, address: str, kind: socket.SocketKind) -> None:
    """Bind ``address`` as the node would (TCP with SO_REUSEADDR, as gRPC and the metrics
    server do; UDP without), then let go. A taken port on any address the host resolves
    to fails; so do the others when none of them can be bound (grpcio binds what it can)."""
    host, port = split_host_port(address, setting)
    if port == 0:
        return  # a free port, chosen at the bind
    try:
        resolved = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"{label(setting)}: {address}: host {host!r} does not resolve ({exc.strerror})"
        ) from exc
    failures: list[OSError] = []
    for family, type_, proto, _, sockaddr in resolved:
        with socket.socket(family, type_, proto) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise bind_failure(setting, address, exc) from exc
                failures.append(exc)
    if failures and len(failures) == len(resolved):
        raise bind_failure(setting, address, failures[0])


def check_data_dir(path: Path) -> None:
    """The data directory exists (made if missing) and this user may write it."""
    where = f"{label('server.data_dir')}: {path}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise StartupError(f"{where}: exists and is not a directory; give a directory") from exc
    except OSError as exc:
        raise StartupError(
            f"{where}: cannot be created ({exc.strerror}); create it for the user the node "
            "runs as, or give another directory"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(
            f"{where}: not writable by this user (uid {os.getuid()}); give the node's user "
            "the directory (chown), or give another directory"
        )


def store_failure(path: Path, exc: Exception) -> StartupError:
    """Why RocksDB would not open ``path``: above all, another node running on it."""
    where = f"{label('server.data_dir')}: {path}"
    if _locked_by_another_process(path / "LOCK"):
        return StartupError(
            f"{where}: in use by another running supernode (its RocksDB LOCK is held); "
            "stop that node, or give this one its own data directory"
        )
    return StartupError(f"{where}: {exc}")


def _locked_by_another_process(lock: Path) -> bool:
    """Called once the store failed to open, so this process holds no lock on ``lock``
    (closing a probe's descriptor would release this process's POSIX locks on the file)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def preflight(config: Config) -> None:
    """Every port the node (and its workers) will bind, and its data directory, checked
    before anything is opened."""
    server = config.server
    check_data_dir(server.data_dir)
    probe_port("server.listen", server.listen, socket.SOCK_STREAM)
    probe_port("server.metrics_listen", server.metrics_listen, socket.SOCK_STREAM)
    host, port = split_host_port(server.metrics_listen, "server.metrics_listen")
    for index in range(1, server.workers if port else 1):
        worker = f"server.metrics_listen +{index}, worker {index}'s metrics"
        probe_port(worker, f"{host}:{port + index}", socket.SOCK_STREAM)
    if server.stun_listen:
        probe_port("server.stun_listen", server.stun_listen, socket.SOCK_DGRAM)
    if config.cluster.enabled and config.cluster.peer_listen and config.tls.enabled:
        probe_port("cluster.peer_listen", config.cluster.peer_listen, socket.SOCK_STREAM)
