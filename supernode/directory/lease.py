"""Lease arithmetic: TTL bounds, clock-skew window, and how long tombstones must live.

Pure functions of a :class:`LeasePolicy` and a time in milliseconds, so every rule is tested
without a clock.
"""

from dataclasses import dataclass

from supernode.errors import InvalidArgument, Reason


@dataclass(frozen=True)
class LeasePolicy:
    """Bounds a supernode applies to every device lease."""

    # A device's requested lease TTL is clamped to [min_ttl_seconds, max_ttl_seconds].
    min_ttl_seconds: int = 10
    max_ttl_seconds: int = 3600
    # The TTL of a request that asks for 0 (no preference).
    default_ttl_seconds: int = 300
    # Signed bodies whose issued_at_ms is further than this from the node's clock are refused.
    max_clock_skew_seconds: int = 120
    # Kept on top of the replay window before a tombstone may go (see tombstone_retention_ms).
    tombstone_margin_seconds: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.min_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError("lease: need 1 <= min_ttl_seconds <= max_ttl_seconds")
        if not self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError("lease: default_ttl_seconds must lie within the TTL bounds")
        if self.max_clock_skew_seconds < 1:
            raise ValueError("lease: max_clock_skew_seconds must be at least 1")
        if self.tombstone_margin_seconds < 0:
            raise ValueError("lease: tombstone_margin_seconds must be at least 0")

    @property
    def tombstone_retention_ms(self) -> int:
        """How long a tombstone (the seq of a removed device) must be kept.

        Two reasons, and the longer one rules:

        * Replication: a tombstone must outlive every live version it superseded, or a replica
          that missed the removal would hand that version back on repair (a resurrection).
          A superseded version ends its lease at most ``max_ttl`` after the removal, plus the
          clock skew between the nodes that stamped and that expire it.
        * Replays: a record accepted at time T carries ``issued_at <= T + skew``, and a replay
          of it passes the skew check only while ``now <= issued_at + skew``, so only until
          ``T + 2 * skew``; removal happens at or after T. ``tombstone_margin_seconds``
          (a minute by default) is margin.
        """
        replication_ms = (self.max_ttl_seconds + self.max_clock_skew_seconds) * 1000
        replay_ms = (2 * self.max_clock_skew_seconds + self.tombstone_margin_seconds) * 1000
        return max(replication_ms, replay_ms)


def granted_ttl_seconds(requested: int, policy: LeasePolicy) -> int:
    """The TTL a device gets: its request clamped to the bounds; 0 asks for the default."""
    if requested == 0:
        return policy.default_ttl_seconds
    return max(policy.min_ttl_seconds, min(policy.max_ttl_seconds, requested))


def check_issued_at(
    issued_at_ms: int, now_ms: int, policy: LeasePolicy, field: str = "record.issued_at_ms"
) -> None:
    """Refuse bodies signed too far from the supernode's clock (stale replays, bad clocks)."""
    skew_ms = policy.max_clock_skew_seconds * 1000
    if issued_at_ms <= 0:
        raise InvalidArgument(f"{field}: required")
    if issued_at_ms < now_ms - skew_ms:
        raise InvalidArgument(
            f"{field}: {(now_ms - issued_at_ms) // 1000} s in the past, "
            f"at most {policy.max_clock_skew_seconds} s of clock skew allowed",
            reason=Reason.CLOCK_SKEW,
        )
    if issued_at_ms > now_ms + skew_ms:
        raise InvalidArgument(
            f"{field}: {(issued_at_ms - now_ms) // 1000} s in the future, "
            f"at most {policy.max_clock_skew_seconds} s of clock skew allowed",
            reason=Reason.CLOCK_SKEW,
        )


def lease_expiry_ms(now_ms: int, ttl_seconds: int) -> int:
    return now_ms + ttl_seconds * 1000
