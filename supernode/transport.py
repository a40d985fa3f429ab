"""Every server port and every client channel of a node is made here.

The public port, each worker's copy of it, the peer port, the primary's private socket
for its workers, the admin socket (``supernode.ops.admin``: plaintext, a unix socket whose
file mode is its access control), and the channels between processes and nodes: one
module, so that which of them speak TLS is decided in one place. The etcd adapter
(``supernode.cluster.etcd``) takes its channels from here too.

With TLS (``supernode.tls.NodeTls``): the public port presents the node's certificate and
asks clients for none; the peer port presents it too and *requires* a client certificate
that chains to the cluster CA, so a caller without one never completes the handshake; the
channels to peers and to etcd present the node's certificate as a client certificate and
verify the other side against the cluster CA. gRPC's Python API cannot ask for an optional
client certificate on one port, hence the separate peer port (docs/cluster.md). Without
TLS (explicit plaintext, ``supernode.tls``) every port and channel is plaintext.
"""

from __future__ import annotations

import os

import grpc

from supernode.config import Config, ServerSettings
from supernode.rpc.arrival import ArrivalStamp
from supernode.tls import NodeTls

# How many pings closer together than the minimum interval a connection may send before
# GOAWAY too_many_pings (gRPC's default, set explicitly so the whole policy reads here).
MAX_PING_STRIKES = 2

# What a worker holds per forwarded stream for a client that does not read: this window
# (plus the one response being relayed). gRPC's default grows the window by BDP probing, to
# megabytes on a unix socket, so the primary could write a slow watcher thousands of events
# before its per-watcher queue ever filled, and the watcher was never cut off. A message
# larger than the window still passes: a pending read opens the window for the whole message.
UPSTREAM_WINDOW_BYTES = 16 << 10


def server_options(config: Config, *, reuse_port: bool) -> list[tuple[str, int]]:
    """Options of every gRPC server of a node: the public port, each worker's copy of it,
    and the primary's private socket for workers, so all enforce one keepalive policy."""
    return [
        ("grpc.max_receive_message_length", config.limits.max_message_bytes),
        ("grpc.max_send_message_length", 64 << 20),
        # Off for one process (a second node on the same port must fail, not share it);
        # on with workers, which all bind the primary's port.
        ("grpc.so_reuseport", int(reuse_port)),
        *keepalive_options(config.server),
        # Idle and half-open connections are closed (ServerSettings says why and when).
        ("grpc.max_connection_idle_ms", _ms(config.server.idle_connection_seconds)),
        ("grpc.server_handshake_timeout_ms", _ms(config.server.handshake_timeout_seconds)),
    ]


def keepalive_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """The server's side of HTTP/2 keepalive (see ServerSettings and README "Keepalive").

    Client pings are accepted every ``keepalive_min_ping_interval_seconds``, also on
    connections without calls and without data (idle Watch and Listen streams send none);
    the server pings each client every ``keepalive_time_seconds`` itself, to drop the ones
    that vanished.
    """
    return [
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS (default 5 minutes).
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.keepalive_min_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        # Without it, pings on a connection with no call in flight must be 2 hours apart.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout_seconds)),
        # The server's own pings, too, go out on streams that carry no data.
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def new_server(config: Config, *, reuse_port: bool) -> grpc.aio.Server:
    return grpc.aio.server(
        options=server_options(config, reuse_port=reuse_port), interceptors=(ArrivalStamp(),)
    )


def bind(server: grpc.aio.Server, address: str, what: str) -> int:
    """Bind plaintext ``address`` (the workers' private unix socket, or a public port whose
    plaintext ``supernode.tls`` allowed) and return the port; OSError if taken."""
    return _bind(server, address, what, None)


def bind_public(server: grpc.aio.Server, address: str, what: str, tls: NodeTls | None) -> int:
    """The public port (the primary's or a worker's): TLS with the node's certificate,
    no client certificate asked; plaintext when ``tls`` is None."""
    credentials = None
    if tls is not None:
        credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
    return _bind(server, address, what, credentials)


def bind_peer(server: grpc.aio.Server, address: str, tls: NodeTls) -> int:
    """The peer port: mutual TLS, a client certificate from the cluster CA required."""
    credentials = grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)], root_certificates=tls.ca_pem, require_client_auth=True
    )
    return _bind(server, address, "cluster.peer_listen", credentials)


def _bind(
    server: grpc.aio.Server,
    address: str,
    what: str,
    credentials: grpc.ServerCredentials | None,
) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpcio raises this for a taken port
        raise OSError(f"{what}: cannot bind {address} ({exc})") from exc
    if port == 0:
        raise OSError(f"{what}: cannot bind {address}")
    return int(port)


def new_admin_server(path: str) -> grpc.aio.Server:
    """The admin socket's server, bound to the unix socket ``path``, made 0600 before the
    server starts (so before anyone can be answered on it)."""
    server = grpc.aio.server()
    _bind(server, f"unix:{path}", "admin socket", None)
    os.chmod(path, 0o600)
    return server


def open_admin(path: str) -> grpc.Channel:
    """A blocking channel to a node's admin socket (the ``status`` and ``backup`` commands)."""
    return grpc.insecure_channel(f"unix:{path}")


def open_upstream(address: str) -> grpc.aio.Channel:
    """A worker's channel to its primary: bounded per-stream buffering, no size limit of
    its own on responses (the primary's send limit is the one a client would meet)."""
    return grpc.aio.insecure_channel(
        address,
        options=(
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", UPSTREAM_WINDOW_BYTES),
            ("grpc.max_receive_message_length", -1),
        ),
    )


# Reconnect within a second of etcd's return (gRPC's default backoff grows to 2 minutes;
# "min_reconnect_backoff" is really the minimum connect timeout). Keepalive pings notice a
# peer that vanished without a TCP reset; etcd refuses pings more often than every 5 s
# (--grpc-keepalive-min-time), hence 10 s.
ETCD_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def open_etcd(address: str, tls: NodeTls | None = None) -> grpc.aio.Channel:
    """A channel to one etcd member (``supernode.cluster.etcd`` keeps one per member):
    with ``tls``, etcd is verified against the cluster CA and shown the node's certificate
    (etcd runs with ``--client-cert-auth``)."""
    return _channel(address, ETCD_CHANNEL_OPTIONS, tls)


def _channel(
    address: str, options: tuple[tuple[str, int], ...], tls: NodeTls | None
) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem or None,
        private_key=tls.key_pem,
        certificate_chain=tls.cert_pem,
    )
    return grpc.aio.secure_channel(address, credentials, options=options)


# A peer that restarts must be reachable again within a second: gRPC's default reconnect
# backoff grows to two minutes, during which every write to that replica becomes a hint and
# every quorum read needs the others.
PEER_RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_peer(address: str, tls: NodeTls | None = None) -> grpc.aio.Channel:
    """A node's channel to another node of its cluster (forwarded calls, the internal
    service): to its peer port with mutual TLS when ``tls`` is given. The same bounded
    window as a worker's upstream, for the same reason: a forwarded watch must stall its
    source, not buffer it."""
    return _channel(
        address,
        (
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", UPSTREAM_WINDOW_BYTES),
            ("grpc.max_receive_message_length", -1),
            *PEER_RECONNECT_OPTIONS,
        ),
        tls,
    )
