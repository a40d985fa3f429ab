"""Setting up peer-to-peer connections: rendezvous, ICE and the relay in parallel, QUIC,
and mutual authentication against signed device records.

Caller (QUIC client, ICE controlling): resolve the callee's verified record, gather ICE
candidates, send an offer through the supernode, receive the answer with the callee's
certificate (refused unless its key is the record's transport key), then race ICE against
a bounded budget while joining the relay; QUIC runs over the direct path if ICE won, else
the relay. The callee is authenticated by TLS (pinned certificate); the caller proves its
transport key inside the encrypted connection by signing the callee's certificate and
fresh ICE credentials, which the callee checks against the caller's signed record.

Callee: nothing goes back to a caller (no candidate, no address, not even that the device
is there) until the app accepts its offer (:class:`IncomingOffer`): ``offers()`` hands
every offer to the app unanswered, and ``incoming()`` accepts those the app's policy
admits (``P2PSettings.auto_accept`` contacts, or its ``accept`` callback) and declines the
rest. An SDK once answered a stranger's bare offer within 13 ms with its ICE candidates,
before the app had seen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from client_sdk.errors import error_from_rpc
from client_sdk.p2p.certificates import CertificateMismatch, check_pinned, der, self_signed
from client_sdk.p2p.connection import PeerConnection, PeerIdentity
from client_sdk.p2p.errors import (
    PeerAuthenticationFailed,
    PeerDeclined,
    PeerKeyMismatch,
    PeerOffline,
    PeerUnreachable,
)
from client_sdk.p2p.ice import IceAgent, limit_stun_retries, quiet_candidate_logs
from client_sdk.p2p.listener import Listener, SignalingSession
from client_sdk.p2p.offers import AcceptPolicy, IncomingOffer, admits
from client_sdk.p2p.paths import IcePath, PathClosed, PathSwitch, RelayPath
from client_sdk.p2p.quic import QuicClosed, QuicSession, client_configuration, server_configuration
from client_sdk.protocol.refusals import Reason, error_reason
from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rpc
from client_sdk.protocol.validation import ANSWER_REASON_MAX_CHARS
from client_sdk.types import Device

log = logging.getLogger(__name__)

AUTH_DOMAIN = b"supernode.p2p.CallerAuth"
_AUTH_OK = b"OK"
_TLS_BAD_CERTIFICATE = 0x12A

Resolve = Callable[[str, str | None], Awaitable[Device]]
T = TypeVar("T")


@dataclass(frozen=True)
class P2PSettings:
    """How this device sets up peer-to-peer connections (``enable_peer_to_peer``).

    Attributes:
        stun_server: (host, port) of a STUN server (a supernode's STUN port) for
            server-reflexive candidates; ``None``: host candidates only.
        direct_timeout: seconds ICE may take to find a direct path before the relay
            carries the connection.
        direct: False never tries the direct path: relay only, so peers never learn
            each other's addresses.
        relay_timeout: seconds to join the supernode's relay.
        handshake_timeout: seconds for the QUIC handshake and the caller's proof of
            its transport key.
        auto_accept: handles whose offers ``incoming()`` accepts without asking the app
            (its allowed contacts); every other offer goes to ``incoming``'s ``accept``
            policy, and is declined without one.
    """

    stun_server: tuple[str, int] | None = None
    # How long the direct path may take before the relay carries the connection.
    direct_timeout: float = 4.0
    # False: never try the direct path (relay only; peers never learn each other's address).
    direct: bool = True
    relay_timeout: float = 10.0
    handshake_timeout: float = 10.0
    # Accepted without asking the app: its allowed contacts. Nobody by default.
    auto_accept: frozenset[str] = frozenset()


def auth_context(offer_id: str, callee_certificate: bytes, ufrag: str, password: str) -> bytes:
    """What the caller signs: bound to this offer, this callee key, these fresh credentials."""
    return b"\x00".join(
        (AUTH_DOMAIN, offer_id.encode(), callee_certificate, ufrag.encode(), password.encode())
    )


class P2PAgent:
    """Connects this device to peers and accepts their connections.

    ``signaling`` is the client's session: every offer, answer and relay goes through its
    current supernode, and the ``listener`` keeps this device listening there.
    """

    def __init__(
        self,
        *,
        handle: str,
        device_id: str,
        transport_key: Ed25519PrivateKey,
        signaling: SignalingSession,
        resolve: Resolve,
        settings: P2PSettings,
    ) -> None:
        self.handle = handle
        self.device_id = device_id
        self._key = transport_key
        self._certificate = self_signed(transport_key)
        self._signaling = signaling
        self._resolve = resolve
        self.settings = settings
        self.listener = Listener(signaling, device_id)
        limit_stun_retries()
        quiet_candidate_logs()

    async def _stubs(
        self,
    ) -> tuple[rpc.RendezvousServiceStub, rpc.RelayServiceStub, tuple[tuple[str, str], ...]]:
        connection = await self._signaling.connection()
        return (
            rpc.RendezvousServiceStub(connection.channel),  # type: ignore[no-untyped-call]
            rpc.RelayServiceStub(connection.channel),  # type: ignore[no-untyped-call]
            connection.metadata,
        )

    # ------------------------------------------------------------------ caller

    async def connect(self, handle: str, device_id: str | None = None) -> PeerConnection:
        started = time.monotonic()
        callee = await self._resolve(handle, device_id)
        rendezvous, relay_stub, metadata = await self._stubs()
        ice = IceAgent(controlling=True, stun_server=self.settings.stun_server)
        switch: PathSwitch | None = None
        try:
            await ice.gather(enabled=self.settings.direct)
            offer = pb.PeerOffer(
                ice_ufrag=ice.ufrag, ice_password=ice.password, candidates=ice.candidates()
            )
            try:
                response = await rendezvous.Connect(
                    pb.ConnectRequest(
                        handle=callee.handle,
                        device_id=callee.device_id,
                        from_device_id=self.device_id,
                        payload=offer.SerializeToString(),
                    ),
                    metadata=metadata,
                )
            except grpc.aio.AioRpcError as exc:
                raise _connect_error(exc) from exc
            answer = pb.PeerOffer.FromString(response.payload)
            try:
                certificate = check_pinned(answer.certificate, callee.transport_key)
            except CertificateMismatch as exc:
                raise PeerKeyMismatch(str(exc)) from exc

            session_box: list[QuicSession] = []
            switch = PathSwitch(
                lambda datagram: session_box[0].receive(datagram),
                lambda reason: session_box[0].lost(reason) if session_box else None,
            )
            await self._open_paths(
                switch,
                ice,
                answer,
                relay_stub,
                response.relay_ticket,
                metadata,
            )
            session = QuicSession.connect(client_configuration(certificate), switch.send)
            session_box.append(session)
            await self._handshake(session)
            await self._prove_identity(session, response.offer_id, answer)
        except BaseException:
            if switch is not None:
                await switch.close()
            else:
                await ice.close()
            raise
        peer = PeerIdentity(callee.handle, callee.device_id, callee.transport_key)
        return PeerConnection(
            peer, session, switch, setup_seconds=time.monotonic() - started, initiated=True
        )

    async def _handshake(self, session: QuicSession) -> None:
        try:
            async with asyncio.timeout(self.settings.handshake_timeout):
                await session.handshake
        except QuicClosed as exc:
            if exc.error_code == _TLS_BAD_CERTIFICATE:
                raise PeerKeyMismatch(
                    "the peer's TLS handshake was not signed by its record's transport key"
                ) from exc
            raise PeerUnreachable(f"QUIC handshake failed: {exc}") from exc
        except TimeoutError as exc:
            session.close(reason="handshake timeout")
            raise PeerUnreachable("QUIC handshake timed out on every path") from exc

    async def _prove_identity(
        self, session: QuicSession, offer_id: str, answer: pb.PeerOffer
    ) -> None:
        reader, writer = session.open_stream()
        context = auth_context(offer_id, answer.certificate, answer.ice_ufrag, answer.ice_password)
        writer.write(self._key.sign(context))
        writer.write_eof()
        try:
            async with asyncio.timeout(self.settings.handshake_timeout):
                verdict = await reader.read()
        except (TimeoutError, ConnectionError) as exc:
            raise PeerAuthenticationFailed(f"the peer did not accept our proof: {exc}") from exc
        if verdict != _AUTH_OK:
            raise PeerAuthenticationFailed("the peer did not accept our transport key")

    async def _open_paths(
        self,
        switch: PathSwitch,
        ice: IceAgent,
        remote: pb.PeerOffer,
        relay_stub: rpc.RelayServiceStub,
        ticket: bytes,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        """Direct first, relay in parallel: whichever is usable when ICE's budget ends."""
        relay = asyncio.create_task(
            RelayPath.join(
                relay_stub, ticket, self.device_id, metadata, within=self.settings.relay_timeout
            )
        )
        direct = (
            self.settings.direct
            and bool(remote.candidates)
            and await ice.connect(
                remote.ice_ufrag,
                remote.ice_password,
                list(remote.candidates),
                within=self.settings.direct_timeout,
            )
        )
        if direct:
            switch.add(IcePath(ice.connection), activate=True)
            relay.add_done_callback(lambda task: _keep_as_backup(task, switch))
            return
        await ice.close()
        try:
            switch.add(await relay, activate=True)
        except (PathClosed, TimeoutError, grpc.aio.AioRpcError) as exc:
            raise PeerUnreachable(f"no direct path, and the relay failed: {exc}") from exc

    # ------------------------------------------------------------------ callee

    async def _listening(
        self, ready: asyncio.Queue[T], on_offer: Callable[[pb.IncomingOffer], None]
    ) -> AsyncIterator[T]:
        """Listen while iterated, handing offers to ``on_offer``; yield what it puts in
        ``ready``. The Listen stream is reopened after every break (``self.listener``), so
        iteration ends only when the client closes, or raises a ``SupernodeError`` for what
        listening again cannot fix; never a gRPC error."""
        listening = asyncio.create_task(self.listener.run(on_offer), name="p2p listener")
        getter: asyncio.Task[T] | None = None
        try:
            while True:
                getter = asyncio.create_task(ready.get())
                done, _ = await asyncio.wait(
                    {getter, listening}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield getter.result()
                    continue
                listening.result()  # the client closed (returns) or a final error (raises)
                return
        finally:
            if getter is not None:
                getter.cancel()
            listening.cancel()

    async def offers(self) -> AsyncIterator[IncomingOffer]:
        """Listen while iterated; yields every offer unanswered, for the app to accept or
        decline (``P2PSettings.auto_accept`` does not apply here)."""
        ready: asyncio.Queue[IncomingOffer] = asyncio.Queue()
        async for offer in self._listening(
            ready, lambda offer: ready.put_nowait(self._offer(offer))
        ):
            yield offer

    async def incoming(self, accept: AcceptPolicy | None = None) -> AsyncIterator[PeerConnection]:
        """Listen while iterated; yields each accepted, authenticated incoming connection.

        An offer from a ``P2PSettings.auto_accept`` handle is accepted; any other is given
        to ``accept`` (which may ask the user: it can be a coroutine, bounded by the offer's
        ``expires_at_ms``), and declined when it says no, or when there is no ``accept``.
        """
        accepted: asyncio.Queue[PeerConnection] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        def on_offer(offer: pb.IncomingOffer) -> None:
            task = asyncio.create_task(self._decide(self._offer(offer), accept, accepted))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:
            async for connection in self._listening(accepted, on_offer):
                yield connection
        finally:
            for task in tasks:
                task.cancel()

    async def _decide(
        self,
        offer: IncomingOffer,
        accept: AcceptPolicy | None,
        accepted: asyncio.Queue[PeerConnection],
    ) -> None:
        try:
            if await admits(offer, self.settings.auto_accept, accept):
                accepted.put_nowait(await offer.accept())
            else:
                await offer.decline("not accepted")
        except Exception as exc:  # one bad offer (or policy) must not stop the listener
            log.warning("incoming connection from %s/%s failed: %s",
                        offer.peer_handle, offer.peer_device_id, exc)  # fmt: skip
            if not offer.answered:
                with contextlib.suppress(Exception):
                    await offer.decline("not accepted")

    def _offer(self, offer: pb.IncomingOffer) -> IncomingOffer:
        async def answer() -> PeerConnection:
            return await self._accept_offer(offer)

        async def refuse(reason: str) -> None:
            rendezvous, _, metadata = await self._stubs()
            await _decline(rendezvous, offer, metadata, reason)

        return IncomingOffer(
            offer.from_handle, offer.from_device_id, offer.expires_at_ms, answer, refuse
        )

    async def _accept_offer(self, offer: pb.IncomingOffer) -> PeerConnection:
        started = time.monotonic()
        rendezvous, relay_stub, metadata = await self._stubs()
        try:
            caller = await self._resolve(offer.from_handle, offer.from_device_id)
        except Exception as exc:
            await _decline(rendezvous, offer, metadata, "caller record does not verify")
            raise PeerAuthenticationFailed(f"caller record: {exc}") from exc
        remote = pb.PeerOffer.FromString(offer.payload)
        ice = IceAgent(controlling=False, stun_server=self.settings.stun_server)
        await ice.gather(enabled=self.settings.direct)
        answer = pb.PeerOffer(
            ice_ufrag=ice.ufrag,
            ice_password=ice.password,
            candidates=ice.candidates(),
            certificate=der(self._certificate),
        )
        await rendezvous.Answer(
            pb.AnswerRequest(offer_id=offer.offer_id, payload=answer.SerializeToString()),
            metadata=metadata,
        )
        first_datagram: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        session_box: list[QuicSession] = []

        def on_datagram(datagram: bytes) -> None:
            if session_box:
                session_box[0].receive(datagram)
            elif not first_datagram.done():
                first_datagram.set_result(datagram)

        def on_lost(reason: str) -> None:
            if session_box:
                session_box[0].lost(reason)
            elif not first_datagram.done():
                first_datagram.set_exception(PathClosed(reason))

        switch = PathSwitch(on_datagram, on_lost)
        try:
            await self._open_paths(switch, ice, remote, relay_stub, offer.relay_ticket, metadata)
            async with asyncio.timeout(self.settings.handshake_timeout):
                datagram = await first_datagram
            session = QuicSession.accept(
                server_configuration(self._certificate, self._key), datagram, switch.send
            )
            session_box.append(session)
            async with asyncio.timeout(self.settings.handshake_timeout):
                await session.handshake
            await self._check_caller(session, caller, offer.offer_id, answer)
        except BaseException:
            await switch.close()
            raise
        peer = PeerIdentity(caller.handle, caller.device_id, caller.transport_key)
        return PeerConnection(
            peer, session, switch, setup_seconds=time.monotonic() - started, initiated=False
        )

    async def _check_caller(
        self, session: QuicSession, caller: Device, offer_id: str, answer: pb.PeerOffer
    ) -> None:
        async with asyncio.timeout(self.settings.handshake_timeout):
            reader, writer = await session.incoming_streams.get()
        async with asyncio.timeout(self.settings.handshake_timeout):
            proof = await reader.read()
        context = auth_context(offer_id, answer.certificate, answer.ice_ufrag, answer.ice_password)
        try:
            Ed25519PublicKey.from_public_bytes(caller.transport_key).verify(proof, context)
        except (InvalidSignature, ValueError) as exc:
            session.close(error_code=0x1, reason="caller authentication failed")
            raise PeerAuthenticationFailed(
                "the caller did not prove its record's transport key"
            ) from exc
        writer.write(_AUTH_OK)
        writer.write_eof()


def _keep_as_backup(task: asyncio.Task[RelayPath], switch: PathSwitch) -> None:
    """A relay that joined after ICE won still receives, in case the peer falls back to it."""
    if task.cancelled() or task.exception() is not None:
        return
    switch.add(task.result(), activate=False)


async def _decline(
    rendezvous: rpc.RendezvousServiceStub,
    offer: pb.IncomingOffer,
    metadata: tuple[tuple[str, str], ...],
    reason: str,
) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError):
        await rendezvous.Answer(
            pb.AnswerRequest(
                offer_id=offer.offer_id, reject=True, reason=reason[:ANSWER_REASON_MAX_CHARS]
            ),
            metadata=metadata,
        )


def _connect_error(exc: grpc.aio.AioRpcError) -> Exception:
    reason = error_reason(exc.trailing_metadata())
    if reason == Reason.PEER_NOT_LISTENING:
        return PeerOffline(exc.details() or "peer offline", code=exc.code(), reason=reason)
    if reason == Reason.CALL_DECLINED:
        return PeerDeclined(exc.details() or "declined", code=exc.code(), reason=reason)
    return error_from_rpc(exc)
