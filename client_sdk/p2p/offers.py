"""Incoming offers as the app sees them, and the policy that accepts them.

Nothing goes back to a caller (no candidate, no address, not even that the device is there
and listening) until the app accepts its offer: an SDK once answered a stranger's bare
Connect within 13 ms with its ICE candidates, before the app had seen the offer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection

from client_sdk.p2p.connection import PeerConnection
from client_sdk.p2p.errors import OfferAnswered


class IncomingOffer:
    """A peer's offer to connect, not answered yet: the caller has learnt nothing of this
    device so far. Answer it once, before ``expires_at_ms``: :meth:`accept` (answers with
    this device's candidates and sets up the connection) or :meth:`decline` (the caller's
    ``connect`` fails with ``PeerDeclined``). One left unanswered expires; the caller's
    ``connect`` then fails too.

    Attributes:
        peer_handle: who calls (the supernode checked the caller's session).
        peer_device_id: the caller's device.
        expires_at_ms: when the caller stops waiting (Unix milliseconds).
        answered: whether :meth:`accept` or :meth:`decline` was called.
    """

    def __init__(
        self,
        peer_handle: str,
        peer_device_id: str,
        expires_at_ms: int,
        answer: Callable[[], Awaitable[PeerConnection]],
        refuse: Callable[[str], Awaitable[None]],
    ) -> None:
        self.peer_handle = peer_handle
        self.peer_device_id = peer_device_id
        self.expires_at_ms = expires_at_ms
        self.answered = False
        self._answer = answer
        self._refuse = refuse

    def __repr__(self) -> str:
        return f"IncomingOffer({self.peer_handle}/{self.peer_device_id})"

    def _answer_once(self) -> None:
        if self.answered:
            raise OfferAnswered(f"the offer of {self.peer_handle} was already answered")
        self.answered = True

    async def accept(self) -> PeerConnection:
        """Answer the offer and set the connection up (the caller's record verified, the
        caller's transport key proven inside QUIC)."""
        self._answer_once()
        return await self._answer()

    async def decline(self, reason: str = "declined") -> None:
        """Refuse the offer; nothing about this device goes back to the caller."""
        self._answer_once()
        await self._refuse(reason)


# The app's decision on an offer: plain or async (it may ask the user).
AcceptPolicy = Callable[[IncomingOffer], bool | Awaitable[bool]]


async def admits(
    offer: IncomingOffer, auto_accept: Collection[str], accept: AcceptPolicy | None
) -> bool:
    """Whether to accept: a contact of ``auto_accept`` without asking, otherwise what
    ``accept`` says; no policy declines."""
    if offer.peer_handle in auto_accept:
        return True
    if accept is None:
        return False
    verdict = accept(offer)
    return bool(await verdict) if inspect.isawaitable(verdict) else bool(verdict)
