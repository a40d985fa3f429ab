"""The parts every process of a node is built from, by the same functions.

A primary (``supernode.server``), a worker (``supernode.workers.worker``) and a cluster
member differ in which parts they run, not in how a part is made: the store, the directory
graph (accounts, admission, the local replica, sessions), the standard gRPC services. What
differs is said where it differs, so the graph is wired once.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from client_sdk.protocol.v1 import directory_pb2, rendezvous_pb2, search_pb2
from supernode.config import Config
from supernode.directory.accounts import Accounts
from supernode.directory.ports import AccountRegistry
from supernode.directory.presence import Admission, Presence, PresenceObserver, Replica
from supernode.directory.privacy import Privacy
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.rate import RateLimiter
from supernode.reflection import enable_reflection
from supernode.revocations import Revocations
from supernode.rpc.source import RateGates
from supernode.sessions import SECRET_BYTES, SessionAuthority
from supernode.store import Store

TOKEN_SECRET = "token_secret"
# Every public service, as descriptors: what workers forward and reflection lists.
PUBLIC_SERVICES = [
    service
    for module in (directory_pb2, search_pb2, rendezvous_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def open_store(config: Config, *, secondary_dir: Path | None = None) -> Store:
    """The node's store (the primary's), or a read-only secondary of it (a worker's)."""
    settings = config.server
    return Store(
        settings.data_dir,
        sync_writes=settings.sync_writes and secondary_dir is None,
        block_cache_bytes=settings.block_cache_mib << 20,
        view_cache_bytes=settings.view_cache_mib << 20,
        secondary_dir=secondary_dir,
    )


def local_token_secret(store: Store) -> bytes:
    """The secret tokens are signed with on a node alone: made once, kept in the store
    (tokens survive a restart). A worker reads the one its primary stored."""
    secret = store.get_meta(TOKEN_SECRET)
    if secret is None:
        if store.secondary:
            raise OSError("the primary has not stored its token secret")
        secret = secrets.token_bytes(SECRET_BYTES)
        store.put_meta(TOKEN_SECRET, secret)
    return secret


@dataclass(frozen=True)
class Directory:
    """The directory's domain graph of one process."""

    accounts: Accounts
    presence: Presence
    sessions: SessionAuthority
    secret: bytes  # what tokens and relay tickets are signed with
    privacy: Privacy


def build_directory(
    config: Config,
    store: Store,
    *,
    node_name: str,
    secret: bytes,
    registry: AccountRegistry | None = None,
    observers: Sequence[PresenceObserver] = (),
    revocations: Revocations | None = None,
) -> Directory:
    """``registry``: where accounts are claimed (default: the store itself, a node alone).
    A secondary store (a worker) serves reads only, so its replica skips the online count.
    ``revocations``: the revoked sessions token checks consult, kept current by the caller
    (a cluster's mirror); default: a fresh set, loaded from the store by the caller."""
    registry = store if registry is None else registry
    accounts = Accounts(
        registry,
        limits=config.limits,
        policy=config.lease,
        clock_ms=wall_clock_ms,
    )
    presence = Presence(
        Admission(
            accounts,
            policy=config.lease,
            limits=config.limits,
            clock_ms=wall_clock_ms,
            node_name=node_name,
        ),
        Replica(
            store,
            accounts,
            policy=config.lease,
            limits=config.limits,
            clock_ms=wall_clock_ms,
            count_online=not store.secondary,
        ),
        observers,
    )
    sessions = SessionAuthority(
        secret,
        clock_ms=wall_clock_ms,
        token_ttl_seconds=config.server.token_ttl_seconds,
        revocations=revocations,
    )
    privacy = Privacy(
        registry, accounts, limits=config.limits, policy=config.lease, clock_ms=wall_clock_ms
    )
    return Directory(accounts, presence, sessions, secret, privacy)


def build_shedding(config: Config, metrics: Metrics) -> Shedding:
    """The load-shedding state of one process (primary or worker: each gates what it
    serves itself), with its in-flight counts and loop lag exported by ``metrics``."""
    shedding = Shedding(config.overload, clock=time.monotonic, rng=random.Random())
    metrics.watch_shedding(shedding)
    return shedding


def build_rate_gates(config: Config, metrics: Metrics) -> RateGates:
    """The rate limits of one process (primary or worker: each limits what it serves
    itself; forwarded calls are limited by the primary, by the client's own address)."""
    limiter = RateLimiter(
        config.rate, clock=time.monotonic, count_refusal=metrics.count_rate_limited
    )
    return RateGates(limiter)


def add_standard_services(
    server: grpc.aio.Server, registered: Sequence[str]
) -> health.aio.HealthServicer:
    """gRPC health checking and server reflection, so grpcurl and load balancers work."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    enable_reflection(server, (*registered, health.SERVICE_NAME))
    return servicer


async def mark_serving(servicer: health.aio.HealthServicer, registered: Sequence[str]) -> None:
    for service in (*registered, ""):
        await servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
