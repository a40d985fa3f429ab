"""Signaling: listening devices, offers in flight, and their answers.

Pure state with injected callbacks (no event loop here): the gRPC layer gives each
listener a ``deliver`` and each offer a ``resolve``. One listener per device; a newer
Listen replaces an older one, which is told why.

Offers handed to a listener wait in its stream until written out; the gRPC layer reports
each one written (:meth:`Switchboard.written`). What waits is bounded in bytes per listener
and per node: a listener that does not read (one Listen that never read, plus 400 offers of
60 KB, took 92 MB) is cut off once its queue passes ``listen_queue_bytes``, and an offer
that would take the node past ``listen_queue_node_bytes`` is refused with a retry hint.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from supernode.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    SupernodeError,
    Unavailable,
)
from supernode.overload import Overloaded
from supernode.rate import RateLimited
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.tickets import Endpoint, TicketAuthority


@dataclass(eq=False)
class Listener:
    device: Endpoint
    deliver: Callable[[pb.IncomingOffer], None]
    end: Callable[[SupernodeError], None]
    queued_bytes: int = 0  # offers delivered, not yet written out


@dataclass(frozen=True, slots=True)
class Answer:
    payload: bytes
    reject: bool
    reason: str


@dataclass(eq=False)
class PendingOffer:
    offer_id: str
    caller: Endpoint
    callee: Endpoint
    relay_ticket: bytes
    resolve: Callable[[Answer], None]


def not_listening(callee: Endpoint) -> FailedPrecondition:
    """The refusal of an offer to a device that is not listening; also what a caller the
    callee's privacy settings refuse gets, word for word (it must not tell the two apart)."""
    return FailedPrecondition(
        f"device_id: {callee.handle}/{callee.device_id} is not listening (offline)",
        reason=Reason.PEER_NOT_LISTENING,
    )


class Switchboard:
    def __init__(
        self,
        tickets: TicketAuthority,
        offer_rate: TokenBuckets,
        *,
        is_live: Callable[[str, str], bool],
        clock_ms: Callable[[], int],
        answer_timeout_ms: int,
        max_queued_bytes: int = 256 << 10,
        max_node_queued_bytes: int = 64 << 20,
    ) -> None:
        self._max_queued = max_queued_bytes
        self._max_node_queued = max_node_queued_bytes
        self.queued_bytes = 0  # all listeners together
        self._tickets = tickets
        self._offer_rate = offer_rate
        self._is_live = is_live
        self._clock_ms = clock_ms
        self.answer_timeout_ms = answer_timeout_ms
        self._listeners: dict[Endpoint, Listener] = {}
        self._pending: dict[str, PendingOffer] = {}
        self.closed = False

    @property
    def listening(self) -> int:
        return len(self._listeners)

    def listen(
        self,
        device: Endpoint,
        deliver: Callable[[pb.IncomingOffer], None],
        end: Callable[[SupernodeError], None],
    ) -> Listener:
        if self.closed:
            raise Unavailable(
                "listen: supernode shutting down, listen elsewhere", reason=Reason.SHUTTING_DOWN
            )
        if not self._is_live(device.handle, device.device_id):
            raise FailedPrecondition(
                f"device_id: {device.device_id!r} has no live record; register it first",
                reason=Reason.DEVICE_NOT_REGISTERED,
            )
        listener = Listener(device, deliver, end)
        previous = self._listeners.get(device)
        self._listeners[device] = listener
        if previous is not None:
            previous.end(
                Aborted(
                    "listen: replaced by a newer Listen for this device", reason=Reason.SUPERSEDED
                )
            )
        return listener

    def stop_listening(self, listener: Listener) -> None:
        if self._listeners.get(listener.device) is listener:
            del self._listeners[listener.device]
        self.queued_bytes -= listener.queued_bytes
        listener.queued_bytes = 0

    def written(self, listener: Listener, size: int) -> None:
        """An offer of ``size`` bytes left ``listener``'s queue (written to its stream)."""
        taken = min(size, listener.queued_bytes)
        listener.queued_bytes -= taken
        self.queued_bytes -= taken

    def _make_room(self, listener: Listener, size: int) -> None:
        """Refuse an offer the bounds have no room for; cut off a listener not reading."""
        if listener.queued_bytes + size > self._max_queued:
            self.stop_listening(listener)
            listener.end(
                ResourceExhausted(
                    f"listen: {listener.queued_bytes + size} bytes of offers not read, at "
                    f"most {self._max_queued}; read faster, then listen again",
                    reason=Reason.TOO_SLOW,
                )
            )
            raise FailedPrecondition(
                f"device_id: {listener.device.handle}/{listener.device.device_id} is not "
                "reading its offers (offline)",
                reason=Reason.PEER_NOT_LISTENING,
            )
        if self.queued_bytes + size > self._max_node_queued:
            raise Overloaded(
                "connect: the supernode holds too many unread offers; retry in 1.0 s "
                "(grpc-retry-pushback-ms)",
                1000,
            )

    def offer(
        self,
        session_id: bytes,
        caller: Endpoint,
        callee: Endpoint,
        payload: bytes,
        resolve: Callable[[Answer], None],
    ) -> PendingOffer:
        """Deliver an offer to the callee's listener now, or refuse at once."""
        self.admit(session_id, caller)
        return self.deliver(caller, callee, payload, resolve)

    def admit(self, session_id: bytes, caller: Endpoint) -> None:
        """What an offer must pass where the caller is attached: its rate and liveness."""
        if not self._offer_rate.allow(session_id):
            hint = max(1, round(self._offer_rate.retry_after(session_id) * 1000))
            raise RateLimited(
                f"connect: offer rate limit of this session reached, retry in {hint / 1000:.1f} s",
                hint,
                key="session",
            )
        if not self._is_live(caller.handle, caller.device_id):
            raise FailedPrecondition(
                f"from_device_id: {caller.device_id!r} has no live record; register it first",
                reason=Reason.DEVICE_NOT_REGISTERED,
            )

    def deliver(
        self,
        caller: Endpoint,
        callee: Endpoint,
        payload: bytes,
        resolve: Callable[[Answer], None],
    ) -> PendingOffer:
        """Hand an admitted offer to the callee's listener on this node (the caller may be
        attached to another node of the cluster, which admitted it)."""
        listener = self._listeners.get(callee)
        if listener is None:
            raise not_listening(callee)
        ticket, _ = self._tickets.issue(caller, callee)
        pending = PendingOffer(secrets.token_hex(12), caller, callee, ticket, resolve)
        offer = pb.IncomingOffer(
            offer_id=pending.offer_id,
            from_handle=caller.handle,
            from_device_id=caller.device_id,
            payload=payload,
            relay_ticket=ticket,
            expires_at_ms=self._clock_ms() + self.answer_timeout_ms,
        )
        size = offer.ByteSize()
        self._make_room(listener, size)
        self._pending[pending.offer_id] = pending
        listener.queued_bytes += size
        self.queued_bytes += size
        listener.deliver(offer)
        return pending

    def answer(self, handle: str, offer_id: str, answer: Answer) -> None:
        pending = self._pending.get(offer_id)
        if pending is None:
            raise NotFound(
                f"offer_id: {offer_id[:40]!r} is not pending (answered, expired or unknown)",
                reason=Reason.OFFER_NOT_FOUND,
            )
        if pending.callee.handle != handle:
            raise PermissionDenied(
                "offer_id: this offer was not sent to you", reason=Reason.NOT_OWNER
            )
        del self._pending[offer_id]
        pending.resolve(answer)

    def forget(self, offer_id: str) -> None:
        """The caller stopped waiting (answered, timed out or went away)."""
        self._pending.pop(offer_id, None)

    def close(self) -> None:
        self.closed = True
        for listener in list(self._listeners.values()):
            listener.end(
                Unavailable(
                    "listen: supernode shutting down, listen elsewhere", reason=Reason.SHUTTING_DOWN
                )
            )
        self._listeners.clear()
