"""The relay: join the two holders of one ticket and pass opaque datagrams, within limits.

Like Tailscale's DERP: the last resort when no direct path exists, carrying only QUIC
packets the relay cannot read. Pure state with injected callbacks; the gRPC layer owns
the streams. Limits per relay session: total bytes, bytes per second (token bucket) and
idle time; a datagram over the rate is dropped (QUIC recovers), over the total ends the
session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from supernode.errors import (
    DeadlineExceeded,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    SupernodeError,
)
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.tickets import Ticket, TicketAuthority


@dataclass(frozen=True)
class RelayLimits:
    max_bytes: int = 256 << 20
    max_bytes_per_second: int = 4 << 20
    idle_timeout_seconds: float = 30.0
    max_datagram_bytes: int = 2048


@dataclass(eq=False)
class RelaySide:
    """One joined stream: how to tell it the pair is complete, hand it a datagram, end it."""

    ready: Callable[[], None]
    send: Callable[[bytes], None]
    end: Callable[[SupernodeError | None], None]


@dataclass(eq=False)
class RelaySession:
    ticket: Ticket
    sides: list[RelaySide | None] = field(default_factory=lambda: [None, None])
    bytes_relayed: int = 0
    last_activity: float = 0.0
    ended: bool = False

    @property
    def ready(self) -> bool:
        return all(side is not None for side in self.sides)


class RelayHub:
    def __init__(
        self,
        tickets: TicketAuthority,
        limits: RelayLimits,
        *,
        clock: Callable[[], float],
        count_bytes: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._tickets = tickets
        self.limits = limits
        self._clock = clock
        self._count_bytes = count_bytes
        self._sessions: dict[str, RelaySession] = {}
        self._used: dict[tuple[str, int], int] = {}  # (session, side) -> ticket expiry
        self._rate = TokenBuckets(
            rate=limits.max_bytes_per_second,
            burst=limits.max_bytes_per_second,
            clock=clock,
        )

    @property
    def sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.ready)

    def join(
        self, raw_ticket: bytes, handle: str, device_id: str, side: RelaySide, now_ms: int
    ) -> tuple[RelaySession, int]:
        """Attach a stream; when it completes the pair, both sides may start sending."""
        ticket = self._tickets.verify(raw_ticket)
        index = ticket.side_of(handle, device_id)
        self._forget_used(now_ms)
        if (ticket.session_id, index) in self._used:
            raise PermissionDenied(
                "join.ticket: already used by this device", reason=Reason.TICKET_INVALID
            )
        self._used[(ticket.session_id, index)] = ticket.expires_at_ms
        session = self._sessions.setdefault(ticket.session_id, RelaySession(ticket))
        session.sides[index] = side
        session.last_activity = self._clock()
        if session.ready:
            for joined in session.sides:
                assert joined is not None
                joined.ready()
        return session, index

    def forward(self, session: RelaySession, from_index: int, datagram: bytes) -> None:
        if session.ended or not session.ready:
            return  # nobody to hand it to yet: datagrams are unreliable by contract
        if len(datagram) > self.limits.max_datagram_bytes:
            raise ResourceExhausted(
                f"datagram: {len(datagram)} bytes, at most {self.limits.max_datagram_bytes}",
                reason=Reason.RELAY_LIMIT,
            )
        if session.bytes_relayed + len(datagram) > self.limits.max_bytes:
            raise ResourceExhausted(
                f"relay: session used its {self.limits.max_bytes} bytes", reason=Reason.RELAY_LIMIT
            )
        if not self._rate.allow(session.ticket.session_id, len(datagram)):
            return  # over the rate: drop, as a congested link would
        session.bytes_relayed += len(datagram)
        session.last_activity = self._clock()
        self._count_bytes(len(datagram))
        other = session.sides[1 - from_index]
        assert other is not None
        other.send(datagram)

    def leave(self, session: RelaySession, index: int, reason: SupernodeError | None) -> None:
        """One side went away: end the other too, and forget the session."""
        if session.ended:
            return
        session.ended = True
        self._sessions.pop(session.ticket.session_id, None)
        other = session.sides[1 - index]
        if other is not None:
            other.end(reason)

    def sweep(self, now_ms: int) -> int:
        """End sessions idle too long, or still waiting for a peer after the ticket expired."""
        now = self._clock()
        ended = 0
        for session in list(self._sessions.values()):
            idle = now - session.last_activity > self.limits.idle_timeout_seconds
            abandoned = not session.ready and session.ticket.expires_at_ms <= now_ms
            if idle or abandoned:
                session.ended = True
                del self._sessions[session.ticket.session_id]
                error = DeadlineExceeded(
                    "relay: idle too long" if session.ready else "relay: the peer never joined",
                    reason=Reason.RELAY_EXPIRED,
                )
                for side in session.sides:
                    if side is not None:
                        side.end(error)
                ended += 1
        return ended

    def _forget_used(self, now_ms: int) -> None:
        for key in [k for k, expires in self._used.items() if expires <= now_ms]:
            del self._used[key]

    def close(self) -> None:
        for session in list(self._sessions.values()):
            session.ended = True
            for side in session.sides:
                if side is not None:
                    side.end(None)
        self._sessions.clear()
