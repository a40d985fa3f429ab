"""``supernode check-config``: every problem of a configuration, found without starting.

Loading (``supernode.config.resolve``) already refuses unknown sections and keys, values of
the wrong type and values out of range; this adds what only a node at start-up would meet:
addresses that are not ``host:port`` or do not resolve, ports the node's own listeners
would share, TLS files missing, unreadable or not belonging together, plaintext that the
node would refuse, a data directory that is a file, and ``SUPERNODE_*`` variables that name
no setting. Ports taken by *other* processes are not checked: check-config is run beside
the very node whose configuration it checks (before a rolling restart, say).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supernode.config import Config, ConfigError, Resolved, split_host_port
from supernode.tls import node_tls, plaintext_refusal


@dataclass(frozen=True)
class Listener:
    """A TCP port the node would bind, and the setting that names it."""

    setting: str
    host: str
    port: int


def problems(resolved: Resolved) -> list[str]:
    """Every problem, each one line naming the setting; empty when the node could start."""
    found = [*resolved.problems, *resolved.unknown_variables]
    config = resolved.config
    if config is None:
        return found
    found += list(_address_problems(config))
    found += list(_port_conflicts(config))
    found += list(_tls_problems(config))
    data_dir = config.server.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        found.append(f"server.data_dir {data_dir}: exists and is not a directory")
    return found


def _addresses(config: Config) -> Iterator[tuple[str, str, bool]]:
    """(setting, address, bound here) for every address setting that is set."""
    server, cluster = config.server, config.cluster
    yield "server.listen", server.listen, True
    yield "server.metrics_listen", server.metrics_listen, True
    if server.stun_listen:
        yield "server.stun_listen", server.stun_listen, True
    if cluster.peer_listen:
        yield "cluster.peer_listen", cluster.peer_listen, True
    if cluster.advertise:
        yield "cluster.advertise", cluster.advertise, False
    for endpoint in cluster.endpoints:
        yield "cluster.etcd_endpoints", endpoint, False


def _address_problems(config: Config) -> Iterator[str]:
    for setting, address, bound in _addresses(config):
        try:
            host, _ = split_host_port(address, setting)
        except ConfigError as exc:
            yield str(exc)
            continue
        if bound and not _resolves(host):
            yield f"{setting}: {address!r}: host {host!r} does not resolve on this machine"


def _resolves(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False
    return True


def listeners(config: Config) -> list[Listener]:
    """The TCP ports the node binds (a port 0 is a free one: never a conflict). Workers
    bind their metrics at the metrics port plus their index (``supernode.workers``)."""
    out = []
    server = config.server
    for setting, address in (
        ("server.listen", server.listen),
        ("server.metrics_listen", server.metrics_listen),
        ("cluster.peer_listen", config.cluster.peer_listen),
    ):
        try:
            host, port = split_host_port(address, setting) if address else ("", 0)
        except ConfigError:
            continue  # reported with the addresses
        if port == 0:
            continue
        out.append(Listener(setting, host, port))
        if setting == "server.metrics_listen":
            for index in range(1, server.workers):
                out.append(Listener(f"{setting} (+{index}, worker {index})", host, port + index))
    return out


def _port_conflicts(config: Config) -> Iterator[str]:
    bound = listeners(config)
    for i, first in enumerate(bound):
        for second in bound[i + 1 :]:
            if first.port == second.port and _overlap(first.host, second.host):
                yield (
                    f"{second.setting}: port {second.port} is also {first.setting}'s "
                    f"({first.host}:{first.port}); give each listener its own port"
                )


def _overlap(first: str, second: str) -> bool:
    """Whether two listeners on one port would collide: the same host, or a wildcard."""
    wildcards = {"0.0.0.0", "::", ""}
    return first == second or first in wildcards or second in wildcards


def _tls_problems(config: Config) -> Iterator[str]:
    try:
        refusal = plaintext_refusal(config)
    except ConfigError:
        refusal = None  # a bad listen address: reported with the addresses
    if refusal is not None:
        yield refusal
    tls = config.tls
    unreadable = False
    for setting, path in (
        ("tls.cert_file", tls.cert_file),
        ("tls.key_file", tls.key_file),
        ("tls.ca_file", tls.ca_file),
    ):
        if not path:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            unreadable = True
            yield f"{setting} {path}: cannot be read ({exc.strerror})"
    if tls.enabled and not unreadable:
        try:
            node_tls(config)
        except ConfigError as exc:
            yield str(exc)
