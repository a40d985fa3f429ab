"""The supernode's configuration: one typed object built once, file -> environment -> flags.

Every setting has a default, so a bare ``supernode serve`` runs a single node. Each field of
each section is reachable three ways, with the later winning:

* TOML file: ``[server] listen = "0.0.0.0:7700"``, ``[lease] max_ttl_seconds = 600``
* environment: ``SUPERNODE_LISTEN`` (server section), ``SUPERNODE_LEASE_MAX_TTL_SECONDS``
* flags: ``--listen``, ``--lease-max-ttl-seconds``

Sections: ``server``, ``lease``, ``limits``, ``cluster``, ``overload`` (load shedding,
``supernode.overload.OverloadSettings``: ``--overload-max-in-flight`` and so on),
``rate`` (per-account and per-source rate limits, ``supernode.rate.RateSettings``:
``--rate-lookup-per-account-per-second`` and so on) and ``tls`` (``supernode.tls``:
``--tls-cert-file``, ``--tls-plaintext`` and so on).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supernode.directory.lease import LeasePolicy
from supernode.directory.validation import Limits
from supernode.overload import OverloadSettings
from supernode.rate import RateSettings


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Process-level settings of one supernode."""

    # host:port of the public gRPC port (port 0: a free one, logged in "supernode ready").
    listen: str = "127.0.0.1:7700"
    # host:port of the Prometheus metrics endpoint (HTTP); with workers, worker i serves its
    # own at this port + i.
    metrics_listen: str = "127.0.0.1:9700"
    # UDP STUN binding responder; an empty string turns it off.
    stun_listen: str = "127.0.0.1:3478"
    # STUN answers per source IP address (token bucket; 0 turns the limit off). An answer is
    # up to 3.4x its request (README "STUN"), so without a limit a spoofed source could be
    # flooded through us; an ICE agent sends a handful of requests per gather, and a few
    # hundred devices behind one NAT address still fit in the burst and rate.
    stun_rate_per_second: float = 20.0
    # STUN answers one source may get at once before stun_rate_per_second applies.
    stun_burst: int = 40
    # The RocksDB directory (made if missing); one running node per directory.
    data_dir: Path = Path("data")
    # The node's name in records and logs; empty: its listen address.
    node_name: str = ""
    # fsync the write-ahead log on every write: survives power loss, costs write latency
    # (without it a process crash loses nothing acknowledged, a power cut may).
    sync_writes: bool = False
    # Lifetime of a session token from Login.
    token_ttl_seconds: int = 3600
    # How often expired leases are swept and tombstones past their retention purged.
    sweep_interval_seconds: float = 1.0
    # On SIGTERM, in-flight calls get this long to finish before they are cancelled.
    shutdown_grace_seconds: float = 10.0
    # RocksDB's block cache (uncompressed data blocks), per process.
    block_cache_mib: int = 256
    # Hot lookup answers kept in process memory (about 0.8 KB per user with 2 devices).
    # 512 MiB holds about two thirds of a million users' answers (~0.8 KB each); a 1M-user
    # node peaked at 822 MiB RSS (benchmarks/baselines). Fewer RocksDB reads per lookup is
    # what narrows the gap to the bare gRPC ceiling.
    view_cache_mib: int = 512
    # Processes serving the public port: this one (the primary, owner of the store) plus
    # workers answering lookups from a read-only secondary (see supernode.workers).
    # One per core is the usual choice on a dedicated host.
    workers: int = 1
    # Python logging level: DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"
    # "text" (a terminal) or "json" (one JSON object per line, for a log collector):
    # supernode.logs says which fields a line has.
    log_format: str = "text"
    # HTTP/2 keepalive (README "Keepalive"). gRPC's default policy refuses client pings
    # closer than 5 minutes (and any ping on a connection without calls): a client pinging
    # more often collects "ping strikes" and, after two, gets GOAWAY too_many_pings, which
    # ends every stream on the connection. Quiet Watch and Listen streams need pings much
    # more often than that to survive NATs and to notice a dead peer, so the policy is set
    # here. Clients may ping this often, with or without calls; the SDK's default
    # (client_sdk.config.Keepalive: every 30 s) stays three times inside it.
    keepalive_min_ping_interval_seconds: float = 10.0
    # The supernode's own pings: find clients that vanished without closing (a phone that
    # lost its network), so their Listen and Watch streams do not hold slots for hours.
    keepalive_time_seconds: float = 120.0
    # No ping acknowledgement in this long: the connection is dead and is closed.
    keepalive_timeout_seconds: float = 20.0
    # A connection with no call in progress for this long is closed (GOAWAY; a client's
    # channel reconnects on its next call). Open Watch and Listen streams are calls in
    # progress, so they keep their connection (gRPC's max_connection_idle, proposal A9).
    # Before: connections that finished the handshake and then idled stayed open for good.
    idle_connection_seconds: float = 120.0
    # A connection that has not finished the HTTP/2 handshake in this long is closed (a
    # half-open flood; gRPC's own default is 120 s).
    handshake_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"server.workers: {self.workers}, at least 1")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"server.log_format: {self.log_format!r}, one of text, json")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(
                f"server.log_level: {self.log_level!r}, one of DEBUG, INFO, WARNING, ERROR"
            )
        if self.stun_rate_per_second < 0 or self.stun_burst < 1:
            raise ValueError("server: stun_rate_per_second >= 0 (0: no limit) and stun_burst >= 1")
        for name in (
            "keepalive_min_ping_interval_seconds",
            "keepalive_time_seconds",
            "keepalive_timeout_seconds",
            "idle_connection_seconds",
            "handshake_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"server.{name}: must be positive")


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Cluster membership (docs/architecture.md section 5). No etcd endpoints: a node alone,
    zero config, exactly as without a cluster."""

    # Comma-separated host:port of the etcd members (one for development, 3 or 5 in
    # production). Empty: this node serves alone and needs nothing else.
    etcd_endpoints: str = ""
    # Every key of this cluster lives under it: several clusters can share one etcd.
    etcd_prefix: str = "/supernode"
    # host:port at which clients and other nodes reach this node's gRPC port; empty means
    # the bound listen address. It is the node's name in the cluster (placement, records).
    advertise: str = ""
    # Failure domain (rack, zone): replicas of a partition go to distinct zones when given.
    zone: str = ""
    # Fixed for the life of a cluster: partition = hash(handle) mod partitions.
    partitions: int = 1024
    # Replicas of every partition, on distinct nodes (zones when given); a write is
    # acknowledged once write_quorum of them hold it (0: a majority, 2 of 3).
    replication_factor: int = 3
    # Replicas that must hold a write before it is acknowledged (0: a majority).
    write_quorum: int = 0
    # Hinted handoff: writes kept for a replica that missed them, at most this many per
    # replica (the oldest go first), at most one max lease TTL old.
    max_hints_per_node: int = 100_000
    # The node's liveness lease in etcd; it is refreshed every third of it.
    member_ttl_seconds: int = 10
    # Liveness is not ownership: a member down this long loses its partitions (controller).
    down_grace_seconds: float = 300.0
    # Partitions moving at once during a join or decommission (each is streamed from a
    # majority of its replicas): bounds the extra load of rebuilding the plane in flight.
    max_moving_partitions: int = 32
    # The share of a move's source's time spent streaming (0-1]: after each page it rests
    # in proportion, so a join takes CPU from serving only in proportion (1: flat out).
    stream_share: float = 0.5
    # With TLS: where the mutual-TLS port other nodes call is bound (docs/cluster.md
    # "Transport security"). Empty: the listen host, a free port; the bound address is
    # published in the node's member record, so peers find it either way.
    peer_listen: str = ""
    # Per etcd operation, over every endpoint and retry; beyond it etcd counts as
    # unreachable (CreateAccount answers UNAVAILABLE). Long enough to ride out a leader
    # election (etcd's default election timeout is 1 s), short enough for a client's deadline.
    etcd_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 65536:
            raise ValueError(f"cluster.partitions: {self.partitions}, must be 1-65536")
        if not 1 <= self.replication_factor <= 5:
            raise ValueError(f"cluster.replication_factor: {self.replication_factor}, must be 1-5")
        if not 0 <= self.write_quorum <= self.replication_factor:
            raise ValueError(
                f"cluster.write_quorum: {self.write_quorum}, must be 0 (a majority) to "
                f"replication_factor ({self.replication_factor})"
            )
        if not 1 <= self.max_moving_partitions <= self.partitions:
            raise ValueError(
                f"cluster.max_moving_partitions: {self.max_moving_partitions}, must be "
                f"1-{self.partitions} (the partitions)"
            )
        if not 0 < self.stream_share <= 1:
            raise ValueError(f"cluster.stream_share: {self.stream_share}, must be in (0, 1]")
        if self.max_hints_per_node < 1:
            raise ValueError(f"cluster.max_hints_per_node: {self.max_hints_per_node}, at least 1")
        if self.member_ttl_seconds < 2:
            raise ValueError(f"cluster.member_ttl_seconds: {self.member_ttl_seconds}, at least 2")
        if self.down_grace_seconds < 0 or self.etcd_timeout_seconds <= 0:
            raise ValueError("cluster: down_grace_seconds >= 0 and etcd_timeout_seconds > 0")
        if not self.etcd_prefix.startswith("/") or self.etcd_prefix.endswith("/"):
            raise ValueError(
                f"cluster.etcd_prefix: {self.etcd_prefix!r}, must start and not end with '/'"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.endpoints)

    @property
    def writes_acknowledged_after(self) -> int:
        return self.write_quorum or self.replication_factor // 2 + 1

    @property
    def endpoints(self) -> list[str]:
        return [e.strip() for e in self.etcd_endpoints.split(",") if e.strip()]


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """Transport security of the node (README "TLS", ``supernode.tls``).

    With ``cert_file``/``key_file`` the public port speaks TLS only. In a cluster the same
    certificate is the node's identity towards its peers and etcd, and ``ca_file`` (the
    cluster CA) is what a peer's or etcd's certificate must chain to; a cluster without it
    does not start. Without a certificate the node serves plaintext only when told so
    (``plaintext``), with a warning, and only on a loopback address unless
    ``public_plaintext`` says that exposing plaintext is intended (behind a TLS-terminating
    proxy, say): a bearer token on the wire is an account taken over.
    """

    # PEM certificate chain of this node (``supernode certs`` makes it and its key).
    cert_file: str = ""
    # The PEM private key of cert_file (unencrypted; readable by the node's user only).
    key_file: str = ""
    # PEM bundle of the cluster CA: verifies peers and etcd (mutual TLS between nodes).
    ca_file: str = ""
    # Serve without TLS, knowingly: development and tests on loopback.
    plaintext: bool = False
    # Also on a non-loopback address (implies plaintext); never the default.
    public_plaintext: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls.cert_file and tls.key_file: give both or neither")
        if self.cert_file and (self.plaintext or self.public_plaintext):
            raise ValueError(
                "tls.plaintext (or tls.public_plaintext) and tls.cert_file: choose one"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a node, by section (``SECTIONS``); rules across sections below."""

    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    lease: LeasePolicy = dataclasses.field(default_factory=LeasePolicy)
    limits: Limits = dataclasses.field(default_factory=Limits)
    cluster: ClusterSettings = dataclasses.field(default_factory=ClusterSettings)
    overload: OverloadSettings = dataclasses.field(default_factory=OverloadSettings)
    rate: RateSettings = dataclasses.field(default_factory=RateSettings)
    tls: TlsSettings = dataclasses.field(default_factory=TlsSettings)

    def __post_init__(self) -> None:
        if self.server.workers > 1 and self.cluster.enabled:
            raise ValueError(
                f"server.workers: {self.server.workers}, but a cluster member runs as one "
                "process for now: set workers to 1, or leave out cluster.etcd_endpoints"
            )


class ConfigError(ValueError):
    """A setting could not be read; the message names the setting and where it came from."""


SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "lease": LeasePolicy,
    "limits": Limits,
    "cluster": ClusterSettings,
    "overload": OverloadSettings,
    "rate": RateSettings,
    "tls": TlsSettings,
}


def setting_names() -> list[tuple[str, str, type[Any], Any]]:
    """(section, field, type, default) for every setting, in declaration order."""
    out = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((section, f.name, hints[f.name], f.default))
    return out


def env_name(section: str, name: str) -> str:
    return (
        f"SUPERNODE_{name.upper()}"
        if section == "server"
        else f"SUPERNODE_{section.upper()}_{name.upper()}"
    )


def flag_name(section: str, name: str) -> str:
    dashed = name.replace("_", "-")
    return f"--{dashed}" if section == "server" else f"--{section}-{dashed}"


def _coerce(value: Any, kind: type[Any], where: str) -> Any:
    if isinstance(kind, types.UnionType):
        raise ConfigError(f"{where}: unsupported type")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"{value!r} is not a boolean")
        if kind is int and isinstance(value, float):
            raise ValueError(f"{value!r} is not an integer")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What the layers (defaults, file, environment, flags) made: the configuration, where
    each setting's value came from, and every problem found on the way.

    ``load`` wants the first problem (a node refuses to start); ``supernode check-config``
    wants all of them; ``supernode config`` wants the sources. One walk serves all three.
    """

    config: Config | None  # None when a problem left no valid configuration
    # "section.field" -> "default", "file PATH", "env VARIABLE" or "flag --name"
    sources: dict[str, str]
    problems: list[str]
    # SUPERNODE_* variables that name no setting (a misspelling, say), with the closest one.
    unknown_variables: list[str]


# SUPERNODE_* variables that are not settings: the test suite's, a worker's hand-over from
# its primary, and what the examples and apps read (README "Examples"). Anything else with
# the prefix is reported as a likely misspelling.
OTHER_VARIABLES = frozenset(
    {
        "SUPERNODE_TEST_WORKERS",
        "SUPERNODE_WORKER_SPEC",
        "SUPERNODE_WORKER_CONFIG",
        "SUPERNODE_CA",
        "SUPERNODE_TARGET",
    }
)


def resolve(
    file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Resolved:
    """Layer file, environment and flags (``section.field`` -> value) over the defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    known = {(s, n): t for s, n, t, _ in setting_names()}
    sources = {f"{s}.{n}": "default" for s, n in known}
    problems: list[str] = []

    def put(section: str, name: str, raw: Any, where: str, source: str) -> None:
        try:
            values[section][name] = _coerce(raw, known[(section, name)], where)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            sources[f"{section}.{name}"] = source

    if file is not None:
        try:
            document = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"config file {file}: {exc}")
            document = {}
        for section, table in document.items():
            if section not in SECTIONS or not isinstance(table, dict):
                problems.append(f"config file {file}: unknown section [{section}]")
                continue
            for name, value in table.items():
                if (section, name) not in known:
                    problems.append(f"config file {file}: unknown setting {section}.{name}")
                    continue
                where = f"config file {file}: {section}.{name}"
                put(section, name, value, where, f"file {file}")
    for section, name in known:
        variable = env_name(section, name)
        if variable in environ:
            where = f"environment {variable}"
            put(section, name, environ[variable], where, f"env {variable}")
    for dotted, value in (flags or {}).items():
        section, _, name = dotted.partition(".")
        if (section, name) not in known:
            problems.append(f"unknown setting {dotted}")
            continue
        flag = flag_name(section, name)
        put(section, name, value, flag, f"flag {flag}")
    return Resolved(_build(values, problems), sources, problems, unknown_variables(environ, known))


def _build(values: dict[str, dict[str, Any]], problems: list[str]) -> Config | None:
    """Each section on its own, so one section's refusal does not hide another's."""
    sections = {}
    for section, given in values.items():
        try:
            sections[section] = SECTIONS[section](**given)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        return None
    try:
        return Config(**sections)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def unknown_variables(
    environ: Mapping[str, str], known: Mapping[tuple[str, str], Any] | None = None
) -> list[str]:
    """One line per ``SUPERNODE_*`` variable that names no setting, with the closest that does."""
    names = [env_name(s, n) for s, n in (known or {(s, n): t for s, n, t, _ in setting_names()})]
    lines = []
    for variable in sorted(environ):
        if not variable.startswith("SUPERNODE_") or variable in OTHER_VARIABLES:
            continue
        if variable in names:
            continue
        close = difflib.get_close_matches(variable, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"environment {variable}: not a setting, ignored{hint}")
    return lines


def load(
    file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration. ``flags`` maps ``section.field`` to values given on the CLI.
    Raises ConfigError with the first problem (``resolve`` has them all)."""
    resolved = resolve(file, environ, flags)
    if resolved.config is None:
        raise ConfigError(resolved.problems[0])
    return resolved.config


def as_flags(config: Config) -> dict[str, str]:
    """Every setting as ``load(flags=...)`` takes it: how a worker gets its node's config."""
    out = {}
    for section, name, _, _ in setting_names():
        value = getattr(getattr(config, section), name)
        if isinstance(value, Path):
            value = value.resolve()
        out[f"{section}.{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def split_host_port(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what}: {address!r} is not host:port")
    return host.strip("[]"), int(port)
