"""The accept policy and the answer-once rule of incoming offers: pure."""

import asyncio

import pytest

from client_sdk import OfferAnswered
from client_sdk.p2p.offers import IncomingOffer, admits


def offer(handle: str, log: list[str]) -> IncomingOffer:
    async def answer() -> object:
        log.append("accepted")
        return object()

    async def refuse(reason: str) -> None:
        log.append(f"declined: {reason}")

    return IncomingOffer(handle, "dev", 0, answer, refuse)  # type: ignore[arg-type]


async def test_contacts_are_admitted_without_asking_and_no_policy_declines() -> None:
    asked: list[str] = []

    def ask(o: IncomingOffer) -> bool:
        asked.append(o.peer_handle)
        return o.peer_handle == "carol"

    async def ask_later(o: IncomingOffer) -> bool:
        await asyncio.sleep(0)
        return True

    contacts = frozenset({"alice"})
    assert await admits(offer("alice", []), contacts, ask) and asked == []
    assert await admits(offer("carol", []), contacts, ask) and asked == ["carol"]
    assert not await admits(offer("mallory", []), contacts, ask)
    assert not await admits(offer("mallory", []), contacts, None)
    assert await admits(offer("mallory", []), frozenset(), ask_later)


async def test_an_offer_is_answered_once() -> None:
    log: list[str] = []
    accepted = offer("alice", log)
    await accepted.accept()
    with pytest.raises(OfferAnswered):
        await accepted.decline()
    declined = offer("bob", log)
    await declined.decline("busy")
    with pytest.raises(OfferAnswered):
        await declined.accept()
    assert log == ["accepted", "declined: busy"]
