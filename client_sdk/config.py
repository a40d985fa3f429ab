"""The client's tunables: one frozen dataclass, built once by the app and passed down."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from client_sdk.backoff import Backoff
from client_sdk.timing import RENEW_WINDOW


@dataclass(frozen=True)
class ClientConfig:
    """How hard the client tries, and when it acts on its own.

    The defaults suit an app on a phone or desktop: a unary call gets ``max_attempts``
    tries of ``call_deadline_seconds`` each across the targets, with jittered exponential
    backoff in between, before it fails with ``Unavailable``.
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
    # Budget for unregistering devices on close: a closing app should not hang.
    close_deadline_seconds: float = 2.0
    channel_options: Sequence[tuple[str, int | str]] = (
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.call_deadline_seconds <= 0:
            raise ValueError("call_deadline_seconds must be positive")
        if self.watch_buffer < 1:
            raise ValueError("watch_buffer must be at least 1")
