"""The callee's SDK answers an offer only after the app accepts it.

Once, a callee's SDK answered a stranger's bare Connect within 13 ms with its ICE
candidates, before the app saw the offer. Now ``offers()`` hands each offer to the app
unanswered; ``incoming()`` accepts ``P2PSettings.auto_accept`` contacts and what its
``accept`` policy admits, and declines the rest: the caller learns nothing but "declined".
"""

import asyncio
import dataclasses

import grpc
import pytest

from client_sdk import IncomingOffer, OfferAnswered, P2PSettings, PeerConnection, PeerDeclined
from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rrpc
from tests.integration.p2p_support import alice_and_bob, p2p_client, until_listening
from tests.integration.process import SupernodeProcess
from tests.integration.waiting import within

RELAY_ONLY = P2PSettings(direct=False)


async def test_an_offer_is_answered_only_once_the_app_accepts(
    supernode: SupernodeProcess,
) -> None:
    async with alice_and_bob(supernode.grpc_target, RELAY_ONLY) as (alice, bob):
        offers = bob.offers()
        first_offer = asyncio.ensure_future(anext(offers))  # iterating listens
        await until_listening(bob, first_offer)
        accepting = asyncio.Event()
        connected_after_accept: list[bool] = []

        async def call() -> PeerConnection:
            connection = await alice.connect("bob")
            connected_after_accept.append(accepting.is_set())
            return connection

        calling = asyncio.create_task(call())
        offer = await within(first_offer)
        assert (offer.peer_handle, offer.peer_device_id) == ("alice", "dev")
        assert not calling.done()  # the SDK has answered nothing: alice is still waiting
        accepting.set()
        callee_side = await offer.accept()
        caller_side = await within(calling)
        assert connected_after_accept == [True]
        assert caller_side.peer.handle == "bob" and callee_side.peer.handle == "alice"
        with pytest.raises(OfferAnswered):
            await offer.decline()

        # A declined offer: the caller gets PeerDeclined, with the callee's reason.
        calling = asyncio.create_task(alice.connect("bob"))
        second = await within(anext(offers))
        await second.decline("busy, call later")
        with pytest.raises(PeerDeclined, match="declined by the callee: busy, call later"):
            await within(calling)
        await offers.aclose()  # type: ignore[attr-defined]
        for connection in (caller_side, callee_side):
            await connection.close()


async def test_incoming_accepts_contacts_and_declines_strangers(
    supernode: SupernodeProcess,
) -> None:
    target = supernode.grpc_target
    contacts = dataclasses.replace(RELAY_ONLY, auto_accept=frozenset({"alice"}))
    bob = await p2p_client(target, "bob", contacts)
    alice = await p2p_client(target, "alice", RELAY_ONLY)
    carol = await p2p_client(target, "carol", RELAY_ONLY)
    asked: list[str] = []

    def ask(offer: IncomingOffer) -> bool:  # the app's prompt: it says no to carol
        asked.append(offer.peer_handle)
        return False

    accepted: asyncio.Queue[PeerConnection] = asyncio.Queue()

    async def serve() -> None:
        async for connection in bob.incoming(ask):
            accepted.put_nowait(connection)

    serving = asyncio.create_task(serve())
    try:
        await until_listening(bob, serving)
        with pytest.raises(PeerDeclined, match="declined by the callee: not accepted"):
            await within(carol.connect("bob"))
        assert asked == ["carol"]
        # A stranger's bare Connect (no real offer, straight to the gRPC API) gets no
        # payload: no candidates, no certificate.
        connection = await carol._session.connection()
        stub = rrpc.RendezvousServiceStub(connection.channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Connect(
                rpb.ConnectRequest(handle="bob", device_id="dev", from_device_id="dev",
                                   payload=b""),
                metadata=connection.metadata,
            )  # fmt: skip
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert asked == ["carol", "carol"]
        # alice is a contact: accepted without asking the app.
        caller_side = await within(alice.connect("bob"))
        callee_side = await within(accepted.get())
        assert callee_side.peer.handle == "alice" and asked == ["carol", "carol"]
        await caller_side.close()
        await callee_side.close()
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        for client in (alice, bob, carol):
            await client.close()
