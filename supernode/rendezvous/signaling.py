"""Signaling: listening devices, offers in flight, and their answers.

Pure state with injected callbacks (no event loop here): the gRPC layer gives each
listener a ``deliver`` and each offer a ``resolve``. One listener per device; a newer
Listen replaces an older one, which is told why.
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
    ResourceExhausted,
    SupernodeError,
    Unavailable,
)
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.tickets import Endpoint, TicketAuthority


@dataclass(eq=False)
class Listener:
    device: Endpoint
    deliver: Callable[[pb.IncomingOffer], None]
    end: Callable[[SupernodeError], None]


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
        f"device_id: {callee.handle}/{callee.device_id} is not listening (offline)"
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
    ) -> None:
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
            raise Unavailable("listen: supernode shutting down, listen elsewhere")
        if not self._is_live(device.handle, device.device_id):
            raise FailedPrecondition(
                f"device_id: {device.device_id!r} has no live record; register it first"
            )
        listener = Listener(device, deliver, end)
        previous = self._listeners.get(device)
        self._listeners[device] = listener
        if previous is not None:
            previous.end(Aborted("listen: replaced by a newer Listen for this device"))
        return listener

    def stop_listening(self, listener: Listener) -> None:
        if self._listeners.get(listener.device) is listener:
            del self._listeners[listener.device]

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
            raise ResourceExhausted(
                f"connect: offer rate limit reached, retry in "
                f"{self._offer_rate.retry_after(session_id):.1f} s"
            )
        if not self._is_live(caller.handle, caller.device_id):
            raise FailedPrecondition(
                f"from_device_id: {caller.device_id!r} has no live record; register it first"
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
        self._pending[pending.offer_id] = pending
        listener.deliver(
            pb.IncomingOffer(
                offer_id=pending.offer_id,
                from_handle=caller.handle,
                from_device_id=caller.device_id,
                payload=payload,
                relay_ticket=ticket,
                expires_at_ms=self._clock_ms() + self.answer_timeout_ms,
            )
        )
        return pending

    def answer(self, handle: str, offer_id: str, answer: Answer) -> None:
        pending = self._pending.get(offer_id)
        if pending is None:
            raise NotFound(
                f"offer_id: {offer_id[:40]!r} is not pending (answered, expired or unknown)"
            )
        if pending.callee.handle != handle:
            raise PermissionDenied("offer_id: this offer was not sent to you")
        del self._pending[offer_id]
        pending.resolve(answer)

    def forget(self, offer_id: str) -> None:
        """The caller stopped waiting (answered, timed out or went away)."""
        self._pending.pop(offer_id, None)

    def close(self) -> None:
        self.closed = True
        for listener in list(self._listeners.values()):
            listener.end(Unavailable("listen: supernode shutting down, listen elsewhere"))
        self._listeners.clear()
