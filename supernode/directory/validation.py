"""The size and count limits a supernode holds requests to (its operators tune them).

The field rules themselves (handles, device ids, keys, signed bodies) are the wire contract's
and live in ``client_sdk.protocol.validation``, shared with the SDK.
"""

from dataclasses import dataclass

# A single handle's answer (an account and its devices at the record limits) must always fit.
MIN_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Size and count limits. Defaults suit a public service; tests and operators tune them."""

    max_message_bytes: int = 64 * 1024
    max_display_name_chars: int = 64
    max_endpoints: int = 16
    max_capabilities: int = 16
    max_devices_per_handle: int = 16
    max_lookup_many: int = 1000
    # The most one answer holds (supernode.directory.budget): LookupMany answers past it are
    # partial (the rest listed in `unanswered`, which the SDK asks for again), a Watch
    # snapshot past it is refused, a Search answer is cut. 4 MiB is gRPC's default limit
    # on what a client receives, so a larger answer would fail in most clients anyway.
    max_response_bytes: int = 4 * 1024 * 1024
    search_min_query_chars: int = 2
    search_default_results: int = 10
    search_max_results: int = 50
    search_rate_per_second: float = 2.0
    search_burst: int = 10
    max_watch_handles: int = 1000
    max_watches_per_session: int = 8
    watch_queue_events: int = 1024
    watch_history_events: int = 100_000
    offer_rate_per_second: float = 2.0
    offer_burst: int = 20
    answer_timeout_ms: int = 10_000
    relay_ticket_ttl_seconds: int = 60
    relay_max_bytes: int = 256 << 20
    relay_max_bytes_per_second: int = 4 << 20
    relay_idle_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_response_bytes < MIN_RESPONSE_BYTES:
            raise ValueError(
                f"limits.max_response_bytes: {self.max_response_bytes}, "
                f"at least {MIN_RESPONSE_BYTES}"
            )
