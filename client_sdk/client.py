"""``Client``: what an app uses to be on the directory and to find others on it.

One client acts for one account (``identity`` + ``handle``) against one or more supernode
addresses (``targets``; it fails over between them). It registers the app's devices and
keeps their leases alive in the background, and it looks others up, searches and watches,
returning our own verified types: a device record reaches the app only after its signature
checked out against the account key pinned for its handle.

    async with Client(["127.0.0.1:7700"], identity, "alice") as client:
        await client.create_account("Alice")
        await client.register_device("laptop", transport_key=key, endpoints=[...])
        bob = await client.lookup("bob")
        async for event in client.watch(["bob"]): ...

Closing (or leaving the ``async with``) stops renewals and watches, unregisters the devices
(so peers see them go offline at once rather than when their lease ends) and closes the
channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.coalesce import Coalescer
from client_sdk.config import ClientConfig
from client_sdk.contacts import ContactsCache
from client_sdk.convert import privacy_from_pb, privacy_to_pb, search_result_from_pb
from client_sdk.errors import (
    AlreadyExists,
    Closed,
    NotFound,
    SignatureError,
    Stale,
    SupernodeError,
    Unavailable,
)
from client_sdk.identity import Identity
from client_sdk.monotonic import MonotonicReads, OwnWrites
from client_sdk.p2p.connection import PeerConnection
from client_sdk.p2p.connector import P2PAgent, P2PSettings
from client_sdk.p2p.errors import PeerOffline, PeerToPeerNotEnabled
from client_sdk.p2p.listener import Listener
from client_sdk.p2p.offers import AcceptPolicy, IncomingOffer
from client_sdk.pins import PinStore
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle
from client_sdk.renewal import DeviceLease, DeviceSpec
from client_sdk.session import Session
from client_sdk.transport import DirectoryConnection, sign_privacy, sign_rotation
from client_sdk.types import (
    Account,
    Consistency,
    Device,
    DeviceStatus,
    Endpoint,
    Presence,
    PrivacySettings,
    Registration,
    SearchResult,
    Visibility,
)
from client_sdk.verify import check_account_signature, verify_account, verify_presence
from client_sdk.watch import Watch
from client_sdk.write_log import WriteAttempt, WriteKind, WriteObserver, observed

RenewalErrorHandler = Callable[[str, SupernodeError], None]


def _set_privacy(
    request: pb.SetPrivacyRequest,
) -> Callable[[DirectoryConnection, float], Awaitable[PrivacySettings]]:
    async def put(connection: DirectoryConnection, deadline: float) -> PrivacySettings:
        return privacy_from_pb(await connection.set_privacy(request, deadline=deadline))

    return put


@dataclass(frozen=True)
class Routing:
    """``Client.routing``: the ring epoch followed and where handle-keyed calls went.

    Attributes:
        ring_epoch: the placement epoch the client routes by; 0 on the plain path (a node
            alone, or ``ClientConfig.ring_aware`` off).
        to_replica: handle-keyed calls (lookups, renewals, unregisters) that a replica of
            the handle answered.
        elsewhere: such calls answered by another node (which forwarded them).
    """

    ring_epoch: int
    to_replica: int
    elsewhere: int


class Client:
    """The async SDK client for one account. Use as ``async with Client(...) as client``.

    ``clock`` (wall-clock seconds) and ``rng`` are injectable for tests; ``pin_store``
    defaults to pins kept in memory (pass ``PinStore.file(path)`` to keep them).
    ``on_renewal_error(device_id, error)`` is told about background renewal failures,
    which are otherwise only logged and retried. ``write_observer`` is told of every
    register and unregister attempt and its outcome (``client_sdk.write_log``).

    Every method raises only ``SupernodeError`` subclasses for what went wrong on the way
    to a supernode or peer (never a gRPC error): ``Closed`` once the client is closed,
    ``Unavailable`` when no target answered within the retry budget, the error for the
    server's answer otherwise (see ``client_sdk.errors``).

    Attributes:
        config: the ``ClientConfig`` in use (retries, deadlines, lease TTL, ...).
        pins: the ``PinStore`` holding the account keys pinned on first use.
        contacts: the ``ContactsCache`` answering lookups of watched handles from their
            watch (``hits`` and ``misses`` count how often it could).
    """

    def __init__(
        self,
        targets: Sequence[str] | str,
        identity: Identity,
        handle: str,
        *,
        pin_store: PinStore | None = None,
        config: ClientConfig | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_renewal_error: RenewalErrorHandler | None = None,
        write_observer: WriteObserver | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self.pins = pin_store or PinStore.in_memory()
        self._reads = MonotonicReads()
        self._session = Session(
            [targets] if isinstance(targets, str) else targets,
            identity,
            handle,
            self.config,
            clock_ms=lambda: int(clock() * 1000),
            rng=rng or random.Random(),
        )
        self._on_renewal_error = on_renewal_error
        # Every acknowledged write of ours also sets what our reads must not undo.
        self._write_observer = OwnWrites(self._reads, write_observer)
        self._leases: dict[str, DeviceLease] = {}
        self._watches: set[Watch] = set()
        self._closed = False
        self._p2p: P2PAgent | None = None
        self._privacy_seq = 0  # the last privacy seq this client stored
        self._clock = clock
        # Lookups of watched handles answered from the watch (client_sdk.contacts).
        self.contacts = ContactsCache(
            margin_ms=round(self.config.contacts_cache_margin_seconds * 1000)
        )
        # Concurrent lookups share LookupMany calls, one batch per consistency level.
        self._lookups = {
            consistency: Coalescer[str, Presence](
                functools.partial(self._lookup_batch, consistency=consistency),
                max_batch=self.config.lookup_batch_max,
                window_seconds=self.config.lookup_batch_window_seconds,
            )
            for consistency in Consistency
        }

    @property
    def handle(self) -> str:
        """The handle this client acts for."""
        return self._session.handle

    @property
    def identity(self) -> Identity:
        """The account key this client signs with."""
        return self._session.identity

    @property
    def routing(self) -> Routing:
        """How the client routes: the ring epoch it follows (0: none, the plain path) and
        how many handle-keyed calls a replica of the handle answered, or another node."""
        session = self._session
        epoch = 0 if session.ring is None else session.ring.epoch
        return Routing(epoch, session.sent_to_replica, session.sent_elsewhere)

    @property
    def current_target(self) -> str:
        """The supernode the client talks to now (it moves on when one fails)."""
        return self._session.current_target

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("the client is closed")

    # ------------------------------------------------------------------ account

    async def create_account(self, display_name: str = "", *, discoverable: bool = True) -> Account:
        """Create this client's account (signed by its key: proof of possession).

        Idempotent for the same key: if the handle already belongs to our key (an earlier
        run, or a retry whose first answer was lost), that account is returned; if it
        belongs to another key, ``AlreadyExists``.
        """
        self._check_open()

        async def create(connection: DirectoryConnection, deadline: float) -> Account:
            account = await connection.create_account(
                self.identity, self.handle, display_name, discoverable, deadline=deadline
            )
            return verify_account(account, self.pins, self.handle)

        try:
            return await self._session.call(create, authenticated=False)
        except AlreadyExists:
            existing = await self._get_account_unpinned(self.handle)
            account = verify_account(
                existing.account,
                self.pins,
                self.handle,
                existing.rotations,
                existing.account_signature,
            )
            if account.account_key != self.identity.public_key:
                raise
            return account

    async def _get_account_unpinned(self, handle: str) -> pb.GetAccountResponse:
        async def get(connection: DirectoryConnection, deadline: float) -> pb.GetAccountResponse:
            return await connection.get_account_record(handle, deadline=deadline)

        return await self._session.call(get, authenticated=False)

    async def get_account(self, handle: str) -> Account:
        """A handle's public account with its current key: the pin follows the account's
        key rotations (each signed by the key before it); any other change of key is
        ``KeyChanged``."""
        self._check_open()
        record = await self._get_account_unpinned(handle)
        return verify_account(
            record.account, self.pins, handle, record.rotations, record.account_signature
        )

    async def get_privacy(self) -> PrivacySettings:
        """This account's privacy settings (``Visibility.EVERYONE`` when never set)."""
        self._check_open()

        async def get(connection: DirectoryConnection, deadline: float) -> PrivacySettings:
            return privacy_from_pb(await connection.get_privacy(deadline=deadline))

        return await self._session.call(get)

    async def set_privacy(
        self,
        visibility: Visibility,
        *,
        allowed: Iterable[str] = (),
        blocked: Iterable[str] = (),
    ) -> PrivacySettings:
        """Who may see this account's devices and send it offers (enforced by the
        supernodes; a refused account sees it offline). Replaces the whole setting: pass
        the full allow and block lists. Signed by the account key, so a stolen session
        token cannot change it.
        """
        self._check_open()
        wanted = PrivacySettings(visibility, frozenset(allowed), frozenset(blocked))
        # The seq is the time in ms (above any seq this client used), so no read comes
        # first; a device of ours with a clock ahead of this one's may have stored a
        # higher one: then read it and go above it.
        floor = self._privacy_seq
        for attempt in range(3):
            issued_at_ms = self._session.clock_ms()
            settings = dataclasses.replace(wanted, seq=max(issued_at_ms, floor + 1))
            signed = privacy_to_pb(self.handle, settings, issued_at_ms)
            try:
                stored = await self._session.call(_set_privacy(sign_privacy(self.identity, signed)))
            except Stale:
                if attempt == 2:
                    raise
                floor = max(floor, (await self.get_privacy()).seq)
                continue
            self._privacy_seq = stored.seq
            return stored
        raise AssertionError("unreachable")

    async def rotate_key(self, new_identity: Identity) -> Account:
        """Move this account to ``new_identity``'s key: a statement signed by the current
        key and the new one, which peers that pinned any earlier key follow. Afterwards
        the client signs (records, logins, settings) with the new key; records signed by
        the old one are no longer accepted by peers. ``Stale`` when another rotation of
        the account came first. This client's devices are registered again at once,
        signed by the new key. Save ``new_identity`` (``Identity.save``) before calling:
        once the rotation is stored, the old key can no longer log in."""
        self._check_open()
        record = await self._get_account_unpinned(self.handle)
        statement = sign_rotation(
            self.identity, new_identity, self.handle, len(record.rotations) + 1
        )

        async def rotate(
            connection: DirectoryConnection, deadline: float
        ) -> list[pb.SignedKeyRotation]:
            return await connection.rotate_key(statement, deadline=deadline)

        chain = await self._session.call(rotate)
        self._session.identity = new_identity
        self._session.forget_tokens()  # sessions of the old key ended: log in with the new
        # Peers drop records signed by the old key: publish ours again, signed by the new
        # one, now rather than at the next renewal (a failure is retried by the renewal).
        for lease in list(self._leases.values()):
            with contextlib.suppress(SupernodeError):
                await lease.update(lease.spec)
        return verify_account(
            record.account, self.pins, self.handle, chain, record.account_signature
        )

    async def logout(self) -> None:
        """Log out and close: watches and renewals stop, our devices are unregistered (as
        :meth:`close` does), then the session this client holds on each supernode is ended,
        so its token is refused from then on (on every node of a cluster within the bound
        README "Sessions" states), and the channels close. Raises ``Unavailable`` if a
        supernode could not be told (that token then lasts until it expires)."""
        if self._closed:
            return
        await self._close(logout=True)

    async def revoke_sessions(self) -> int:
        """End every session of this account, on every device, issued until now: for a
        user who lost a device. Signed by the account key (no token needed). This client
        logs in again by itself on its next call. Returns the moment (ms since the epoch)
        at or before which the account's tokens are refused."""
        self._check_open()

        async def revoke(connection: DirectoryConnection, deadline: float) -> int:
            response = await connection.revoke_sessions(
                self.identity, self.handle, deadline=deadline
            )
            return int(response.revoked_before_ms)

        revoked_before = await self._session.call(revoke, authenticated=False)
        self._session.forget_tokens()
        return revoked_before

    async def login(self) -> None:
        """Log in now (again, if already logged in), e.g. to check the account key at
        startup. Optional: every call logs in (and re-logs in) by itself."""
        self._check_open()
        self._session.forget_token(self._session.current_target)
        await self._session.connection()

    # ------------------------------------------------------------------ own devices

    async def register_device(
        self,
        device_id: str,
        *,
        transport_key: bytes,
        endpoints: Iterable[Endpoint] = (),
        status: DeviceStatus = DeviceStatus.ONLINE,
        capabilities: Iterable[str] = (),
        ttl: int | None = None,
    ) -> Registration:
        """Publish a signed record for one of this account's devices and keep it alive.

        ``ttl`` (seconds) is a request: the supernode clamps it and the granted value is
        in the returned ``Registration``. Renewal then runs in the background until
        :meth:`unregister_device` or :meth:`close`. Registering a device id again
        replaces its record.
        """
        self._check_open()
        spec = DeviceSpec(
            device_id=device_id,
            transport_key=transport_key,
            endpoints=tuple(endpoints),
            status=status,
            capabilities=tuple(capabilities),
            ttl_seconds=self.config.default_ttl_seconds if ttl is None else ttl,
        )
        existing = self._leases.get(device_id)
        if existing is not None:
            return await existing.update(spec)
        lease = DeviceLease(self._session, spec, self._report_renewal_error, self._write_observer)
        registration = await lease.register()
        self._leases[device_id] = lease
        lease.start()
        return registration

    async def update_device(
        self,
        device_id: str,
        *,
        status: DeviceStatus | None = None,
        endpoints: Iterable[Endpoint] | None = None,
        capabilities: Iterable[str] | None = None,
        transport_key: bytes | None = None,
    ) -> Registration:
        """Publish a change to a registered device now (fields left ``None`` stay).

        ``KeyError`` if this client has not registered ``device_id``: a mistake in the
        app, not a server answer.
        """
        lease = self._lease(device_id)
        spec = lease.spec
        return await lease.update(
            dataclasses.replace(
                spec,
                status=spec.status if status is None else status,
                endpoints=spec.endpoints if endpoints is None else tuple(endpoints),
                capabilities=spec.capabilities if capabilities is None else tuple(capabilities),
                transport_key=spec.transport_key if transport_key is None else transport_key,
            )
        )

    async def update_status(self, device_id: str, status: DeviceStatus) -> Registration:
        """Publish a new status (online, away, busy) for a registered device now: the
        shorthand for ``update_device(device_id, status=status)``."""
        return await self.update_device(device_id, status=status)

    def registration(self, device_id: str) -> Registration | None:
        """The latest lease granted to one of our devices (renewals update it); ``None``
        for a device this client did not register."""
        self._check_open()
        lease = self._leases.get(device_id)
        return None if lease is None else lease.registration

    async def unregister_device(self, device_id: str) -> bool:
        """Stop renewing and remove the device now; False if it was already gone.

        The tombstone covers every record this client sent for the device, including
        renewals whose answer it never got, so none of them can bring the device back.
        """
        self._check_open()
        lease = self._leases.pop(device_id, None)
        if lease is not None:
            await lease.stop()
        return await self._unregister(device_id, 0 if lease is None else lease.last_seq)

    async def _unregister(
        self,
        device_id: str,
        seq: int,
        *,
        attempts: int | None = None,
        deadline: float | None = None,
    ) -> bool:
        async def unregister(connection: DirectoryConnection, deadline: float) -> bool:
            attempt = WriteAttempt(
                self.handle, device_id, WriteKind.UNREGISTER, seq, connection.target
            )
            return await observed(
                self._write_observer,
                attempt,
                lambda: connection.unregister_device(device_id, seq=seq, deadline=deadline),
                lambda _: None,
            )

        return await self._session.call(
            unregister, attempts=attempts, deadline=deadline, handle=self.handle
        )

    def _lease(self, device_id: str) -> DeviceLease:
        self._check_open()
        lease = self._leases.get(device_id)
        if lease is None:
            raise KeyError(f"device {device_id!r} is not registered by this client")
        return lease

    def _report_renewal_error(self, lease: DeviceLease, error: SupernodeError) -> None:
        if self._on_renewal_error is not None:
            self._on_renewal_error(lease.device_id, error)

    # ------------------------------------------------------------------ others

    async def lookup(self, handle: str, consistency: Consistency = Consistency.ONE) -> Presence:
        """A handle's account and live devices, every record verified; ``NotFound`` if
        there is no such account. ``consistency``: how many replicas to read (a cluster).

        Lookups made concurrently (in one turn of the event loop, or within
        ``config.lookup_batch_window_seconds``) go to the supernode as one ``LookupMany``
        (``client_sdk.coalesce``); each caller still gets its own answer or error. A handle
        that breaks the handle rules is sent alone, so it fails by itself."""
        self._check_open()
        if consistency is Consistency.ONE and self.config.contacts_cache:
            cached = self._watched(handle)
            if cached is not None:
                return cached
        if self.config.coalesce_lookups and _valid_handle(handle):
            return await self._lookups[consistency].load(handle)
        return await self._lookup_one(handle, consistency)

    def _watched(self, handle: str) -> Presence | None:
        """``handle``'s presence from a watch of it that is in sync, if every device's
        known lease still runs and it undoes nothing this client read or wrote."""
        for watch in self._watches:
            if handle not in watch.handles or not watch.in_sync:
                continue
            watched = watch.view.get(handle)
            if watched is None:  # no account at snapshot time: the server says NOT_FOUND
                return None
            answer = self.contacts.answer(watched, int(self._clock() * 1000))
            if answer is None or self._reads.regressed(answer):
                return None
            return answer
        return None

    async def _lookup_one(self, handle: str, consistency: Consistency) -> Presence:
        def lookup_at(quorum: bool) -> Callable[[DirectoryConnection, float], Awaitable[Presence]]:
            async def lookup(connection: DirectoryConnection, deadline: float) -> Presence:
                response = await connection.lookup(handle, deadline=deadline, quorum=quorum)
                return verify_presence(response, self.pins, handle)

            return lookup

        quorum = consistency is Consistency.QUORUM
        presence = await self._session.call(lookup_at(quorum), handle=handle)
        if not quorum and self._reads.regressed(presence):  # a lagging replica: read a
            presence = await self._session.call(lookup_at(True), handle=handle)  # majority
            quorum = True
        self._reads.remember(presence, settled=quorum)
        self.contacts.learn(presence)
        return presence

    async def _lookup_batch(
        self, handles: list[str], consistency: Consistency
    ) -> dict[str, Presence | Exception]:
        """One coalesced batch: a lone handle keeps the single call (routed straight to a
        replica of it), several go in one ``LookupMany``."""
        if len(handles) == 1:
            (handle,) = handles
            try:
                return {handle: await self._lookup_one(handle, consistency)}
            except SupernodeError as error:
                return {handle: error}
        found = await self.lookup_many(handles, consistency)
        return {
            handle: NotFound(f"handle: no account {handle!r}") if presence is None else presence
            for handle, presence in found.items()
        }

    async def lookup_many(
        self, handles: Sequence[str], consistency: Consistency = Consistency.ONE
    ) -> dict[str, Presence | None]:
        """Several handles in one call, in the order given; ``None`` for no such account.

        An answer the supernode cuts at its ``max_response_bytes`` lists the rest as
        unanswered; they are asked for again (within the same call's deadline) until every
        handle is settled."""
        self._check_open()
        wanted = list(dict.fromkeys(handles))

        def lookup_many_at(
            quorum: bool,
        ) -> Callable[[DirectoryConnection, float], Awaitable[dict[str, Presence | None]]]:
            async def lookup_many(
                connection: DirectoryConnection, deadline: float
            ) -> dict[str, Presence | None]:
                found: dict[str, Presence | None] = dict.fromkeys(wanted)
                pending = wanted
                # A partial answer (the server's max_response_bytes) lists the rest as
                # unanswered: ask again for them, each answer settling at least one handle.
                while pending:
                    response = await connection.lookup_many(
                        pending, deadline=deadline, quorum=quorum
                    )
                    asked = set(pending)
                    for result in response.results:
                        handle = result.account.handle
                        if handle not in asked:
                            raise SignatureError(f"lookup_many: served {handle!r}, not asked")
                        found[handle] = verify_presence(result, self.pins, handle)
                    rest = list(response.unanswered)
                    if len(rest) >= len(pending) or not asked.issuperset(rest):
                        raise Unavailable(
                            "lookup_many: the supernode answered none of the handles asked; "
                            "try again later or ask for fewer"
                        )
                    pending = rest
                return found

            return lookup_many

        quorum = consistency is Consistency.QUORUM
        found = await self._session.call(lookup_many_at(quorum))
        if not quorum and any(p is not None and self._reads.regressed(p) for p in found.values()):
            found = await self._session.call(lookup_many_at(True))
            quorum = True
        for presence in found.values():
            if presence is not None:
                self._reads.remember(presence, settled=quorum)
                self.contacts.learn(presence)
        return found

    async def search(self, query: str, limit: int = 0) -> list[SearchResult]:
        """Discoverable accounts matching ``query`` (handle prefix or display-name word
        prefix, case- and accent-insensitive), best first; ``limit`` 0 means the
        server's default. Rate limited by the server: ``RateLimited``."""
        self._check_open()

        async def search(connection: DirectoryConnection, deadline: float) -> list[SearchResult]:
            response = await connection.search(query, limit, deadline=deadline)
            signatures = list(response.account_signatures)
            signatures += [b""] * (len(response.accounts) - len(signatures))  # an older server
            for account, signature in zip(response.accounts, signatures, strict=True):
                check_account_signature(account, signature)
            return [search_result_from_pb(account) for account in response.accounts]

        return await self._session.call(search)

    def watch(self, handles: Iterable[str]) -> Watch:
        """Follow the presence of ``handles``: ``async for event in client.watch([...])``.

        Starts at once (in the background) with a snapshot; see ``Watch`` and
        ``PresenceEvent`` for what the events mean across reconnects.
        """
        self._check_open()
        watch = Watch(
            self._session, self.pins, handles, self.get_account, on_close=self._watches.discard
        )
        self._watches.add(watch)
        return watch

    # ------------------------------------------------------------------ peer to peer

    def enable_peer_to_peer(
        self,
        device_id: str,
        transport_key: Ed25519PrivateKey,
        settings: P2PSettings | None = None,
    ) -> None:
        """Connect to peers and accept their connections as ``device_id``.

        The device's registered record must carry ``transport_key``'s public key: peers
        check the QUIC certificate against it, so a supernode cannot stand in for us.
        """
        self._check_open()
        self._p2p = P2PAgent(
            handle=self.handle,
            device_id=device_id,
            transport_key=transport_key,
            signaling=self._session,
            resolve=self._resolve_device,
            settings=settings or P2PSettings(),
        )

    def _agent(self) -> P2PAgent:
        self._check_open()
        if self._p2p is None:
            raise PeerToPeerNotEnabled(
                "peer to peer is not enabled: call enable_peer_to_peer() first"
            )
        return self._p2p

    async def connect(self, handle: str, device: str | None = None) -> PeerConnection:
        """A connection to ``handle``'s ``device`` (any live one when None): direct when ICE
        finds a path in time, else through the supernode's relay; ``conn.path`` tells."""
        return await self._agent().connect(handle, device)

    def incoming(self, accept: AcceptPolicy | None = None) -> AsyncIterator[PeerConnection]:
        """Listen for peers while iterated: ``async for conn in client.incoming(): ...``.

        Yields the connections this device accepted: offers from ``P2PSettings.auto_accept``
        handles, and those ``accept(offer)`` (an ``IncomingOffer``; plain or async, e.g. a
        prompt) says yes to. The rest are declined (the caller gets ``PeerDeclined``), and
        nothing about this device reaches a caller before its offer is accepted.

        Outlives supernode restarts and outages: a broken Listen stream is reopened, with
        backoff and failover across ``targets`` (see :meth:`wait_listening`). Iteration
        ends when the client closes, and raises only ``SupernodeError``s that listening
        again cannot fix (the device is not registered, another ``incoming()`` of this
        device took over). Iterate one ``incoming()`` per device at a time.
        """
        return self._agent().incoming(accept)

    def offers(self) -> AsyncIterator[IncomingOffer]:
        """Listen for peers while iterated, yielding each offer unanswered:
        ``async for offer in client.offers(): conn = await offer.accept()`` (or
        ``await offer.decline()``). Listens as :meth:`incoming` does; use one or the other.
        """
        return self._agent().offers()

    async def wait_listening(self) -> None:
        """Return once offers can reach this device: its Listen stream is open on a
        supernode (it answered ``ListenReady``), so a caller's ``connect`` no longer fails
        with ``PeerOffline``. Returns at once while that holds; while the stream is broken
        (a supernode restart) it waits for the listener to listen again.

        Only an iterated :meth:`incoming` listens, so start that first; bound the wait
        with ``asyncio.timeout`` (it does not end by itself if the client closes).
        """
        await self._agent().listener.ready.wait()

    @property
    def listener(self) -> Listener:
        """This device's listener: ``ready`` (the event :meth:`wait_listening` waits on)
        and ``reconnects`` (Listen streams that broke and were reopened)."""
        return self._agent().listener

    async def _resolve_device(self, handle: str, device_id: str | None) -> Device:
        presence = await self.lookup(handle)
        candidates = [d for d in presence.devices if device_id in (None, d.device_id)]
        if not candidates:
            raise PeerOffline(f"{handle}/{device_id or '*'}: no live device")
        return min(candidates, key=lambda d: d.status is not DeviceStatus.ONLINE)

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop watches and renewals, unregister our devices (within
        ``config.close_deadline_seconds``), close the channels. Safe to call twice. The
        session's token stays valid until it expires: :meth:`logout` ends it too."""
        if self._closed:
            return
        await self._close(logout=False)

    async def _close(self, *, logout: bool) -> None:
        self._closed = True
        for lookups in self._lookups.values():
            await lookups.close()
        for watch in list(self._watches):
            await watch.close()
        leases = list(self._leases.values())
        self._leases.clear()
        for lease in leases:
            await lease.stop()
        if self.config.unregister_on_close and leases:
            budget = self.config.close_deadline_seconds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget):
                    await asyncio.gather(
                        *(
                            self._unregister(
                                lease.device_id, lease.last_seq, attempts=2, deadline=budget
                            )
                            for lease in leases
                        ),
                        return_exceptions=True,  # best effort: the lease ends anyway
                    )
        try:
            if logout:
                await self._session.logout()
        finally:
            await self._session.close()


def _valid_handle(handle: str) -> bool:
    try:
        check_handle("handle", handle)
    except InvalidField:
        return False
    return True
