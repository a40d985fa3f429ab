"""The client's tunables: one frozen dataclass, built once by the app and passed down."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from client_sdk.backoff import Backoff
from client_sdk.timing import RENEW_WINDOW
from client_sdk.tls import Tls


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 keepalive pings on the SDK's channels, and why they must fit the server.

    Watch and Listen streams can stay silent for hours. Pings every ``time_seconds`` keep
    NAT and firewall mappings of that quiet TCP connection alive and find a dead supernode
    (no acknowledgement in ``timeout_seconds``) long before TCP would, so the stream
    reconnects elsewhere. They are sent with and without calls in flight.

    The supernode refuses pings closer together than its
    ``server.keepalive_min_ping_interval_seconds`` (default 10 s; gRPC's own default is
    5 minutes): two such pings and it sends GOAWAY ``too_many_pings``, which ends every
    stream of the channel. The default here (30 s) stays three times inside that; pinging a
    server that kept gRPC's default policy needs ``time_seconds`` of 300 or more.
    """

    time_seconds: float = 30.0
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.time_seconds <= 0 or self.timeout_seconds <= 0:
            raise ValueError("keepalive: time_seconds and timeout_seconds must be positive")

    def channel_options(self) -> tuple[tuple[str, int], ...]:
        return (
            ("grpc.keepalive_time_ms", round(self.time_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.timeout_seconds * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # gRPC stops pinging after this many pings without data (default 2), which
            # would leave a quiet stream unprotected; 0 lifts the limit.
            ("grpc.http2.max_pings_without_data", 0),
        )


@dataclass(frozen=True)
class ClientConfig:
    """How hard the client tries, and when it acts on its own.

    The defaults suit an app on a phone or desktop: a unary call gets ``max_attempts``
    tries of ``call_deadline_seconds`` each across the targets, with jittered exponential
    backoff in between, before it fails with ``Unavailable``.

    Attributes:
        call_deadline_seconds: the gRPC deadline of each attempt of a unary call.
        max_attempts: tries of a unary call across the targets before ``Unavailable``.
        backoff: the delay between tries (and between a watch's reconnects).
        token_refresh_margin_seconds: log in again this long before the token expires.
        renew_window: renew a lease between these fractions of the granted TTL.
        default_ttl_seconds: the lease ``register_device`` asks for when given no ``ttl``.
        watch_buffer: watch events read ahead of the app before reading pauses.
        ring_aware: in a cluster, learn the placement and send each handle's calls straight
            to one of its replicas (``client_sdk.ring``; the default), saving the forwarding
            hop; False: always the targets given, which forward. A read that would undo the
            client's own acknowledged write (it reached a replica still to get it) is read
            again at QUORUM (``client_sdk.monotonic``).
        unregister_on_close: ``close()`` unregisters our devices (False: their leases
            just run out, as after a crash).
        close_deadline_seconds: the budget for unregistering devices on ``close()``.
        channel_options: gRPC options of every channel to a supernode (keepalive).
        tls: how supernodes' certificates are verified (``client_sdk.tls.Tls``): the
            system's roots by default, or a CA file or bytes, or pinned fingerprints.
        plaintext: no TLS at all, for a development supernode run with
            ``--tls-plaintext``; tokens and lookups then cross the network readable.
        keepalive: renew a device's lease with ``KeepAlive`` while its record is unchanged
            (no new signature; the supernode checks none and tells no watcher). Off by
            default: in a cluster, a replica that missed the keepalives while it was down
            expires its copy into a tombstone of the same seq, which the merge rule puts
            above the extension, so the lease can end early there and spread by repair (the
            SDK then registers anew). False: every renewal signs and registers a new record.
        coalesce_lookups: send concurrent ``lookup`` calls as one ``LookupMany``
            (``client_sdk.coalesce``); False: one ``Lookup`` call each.
        lookup_batch_window_seconds: how long a lookup waits for others to share its
            batch, the bound on the latency coalescing adds; 0 (the default): only the
            lookups made in the same turn of the event loop.
        lookup_batch_max: handles per coalesced ``LookupMany`` (at most the server's
            ``max_lookup_many``, 1000 by default).
        contacts_cache: answer ``lookup`` of a handle this client watches from the watch
            (``client_sdk.contacts``) while the watch is in sync and every device's known
            lease runs for longer than ``contacts_cache_margin_seconds``.
        contacts_cache_margin_seconds: the clock skew allowed between this device and the
            supernodes: a device whose lease ends sooner than this is asked for afresh.
    """

    call_deadline_seconds: float = 5.0
    max_attempts: int = 6
    backoff: Backoff = field(default_factory=Backoff)
    # Log in again this long before the token expires (or halfway through its life).
    token_refresh_margin_seconds: float = 60.0
    # Renew a lease between these fractions of the granted TTL.
    renew_window: tuple[float, float] = RENEW_WINDOW
    default_ttl_seconds: int = 60
    # Watch events read ahead of the app; when full the supernode sees a slow reader.
    watch_buffer: int = 256
    unregister_on_close: bool = True
    # Straight to a replica of each handle; reads stay read-your-writes (client_sdk.monotonic).
    ring_aware: bool = True
    # Budget for unregistering devices on close: a closing app should not hang.
    close_deadline_seconds: float = 2.0
    # Options of every channel to a supernode; the default is the keepalive above. Build
    # others with ``Keepalive(...).channel_options()`` plus what you add.
    channel_options: Sequence[tuple[str, int | str]] = Keepalive().channel_options()
    # TLS, verified against the system's roots unless told otherwise; never plaintext
    # unless asked.
    tls: Tls = field(default_factory=Tls)
    plaintext: bool = False
    # Renewals extend the registered record's lease (KeepAlive) while it is unchanged; off
    # until a lease's expiry on a lagging replica stops outranking a later keepalive.
    keepalive: bool = False
    # Concurrent lookups share one LookupMany: a contact list opening costs one call.
    coalesce_lookups: bool = True
    lookup_batch_window_seconds: float = 0.0
    lookup_batch_max: int = 100
    # Lookups of watched contacts answered from the watch, never past a known lease end.
    contacts_cache: bool = True
    contacts_cache_margin_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.plaintext and not self.tls.default:
            raise ValueError("plaintext=True and tls: choose one")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= self.lookup_batch_max <= 1000:
            raise ValueError("lookup_batch_max must be between 1 and 1000")
        if not 0 <= self.lookup_batch_window_seconds <= 1:
            raise ValueError("lookup_batch_window_seconds must be between 0 and 1")
        if self.contacts_cache_margin_seconds < 0:
            raise ValueError("contacts_cache_margin_seconds must not be negative")
        if self.call_deadline_seconds <= 0:
            raise ValueError("call_deadline_seconds must be positive")
        if self.watch_buffer < 1:
            raise ValueError("watch_buffer must be at least 1")
