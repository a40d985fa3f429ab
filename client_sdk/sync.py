"""``SyncClient``: the async client behind a blocking API, for scripts and REPLs.

The client needs a running event loop for its background work (lease renewal, watches,
listening for peers), which a plain script does not have; so the facade runs one in a
daemon thread (``client_sdk.blocking.LoopThread``) and hands each call over to it. Every
method has the meaning, arguments and errors of the ``Client`` method of the same name;
what differs is listed in the ``SyncClient`` docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.blocking import BlockingIterator, LoopThread
from client_sdk.client import Client, RenewalErrorHandler, Routing
from client_sdk.config import ClientConfig
from client_sdk.contacts import ContactsCache
from client_sdk.identity import Identity
from client_sdk.p2p.connection import PeerConnection
from client_sdk.p2p.connector import P2PSettings
from client_sdk.p2p.listener import Listener
from client_sdk.p2p.offers import IncomingOffer
from client_sdk.p2p.sync import SyncIncoming, SyncOffer, SyncOffers, SyncPeerConnection
from client_sdk.pins import PinStore
from client_sdk.types import (
    Account,
    Consistency,
    DeviceStatus,
    Endpoint,
    Presence,
    PresenceEvent,
    PrivacySettings,
    Registration,
    SearchResult,
    Visibility,
    WatchPosition,
)
from client_sdk.watch import Watch
from client_sdk.write_log import WriteObserver


class SyncWatch(BlockingIterator[PresenceEvent, PresenceEvent]):
    """A watch as a blocking iterator: ``for event in watch``, or ``watch.next(timeout)``.

    The same events as ``Watch`` (see ``PresenceEvent``), in the same order; a timeout
    loses none. ``close()`` (or leaving ``with``) stops following.
    """

    def __init__(self, watch: Watch, loop: LoopThread) -> None:
        super().__init__(loop, watch, lambda event: event, watch.close)
        self._watch = watch

    @property
    def handles(self) -> frozenset[str]:
        """The handles followed."""
        return self._watch.handles

    @property
    def position(self) -> WatchPosition | None:
        """Where the watch stands in the supernode's change log (``None`` before the
        first snapshot)."""
        return self._loop.call(lambda: self._watch.position)

    @property
    def view(self) -> Mapping[str, Presence]:
        """Presence of the watched handles as of the last event received (a copy)."""
        return self._loop.call(lambda: dict(self._watch.view))


class SyncClient:
    """Blocking ``Client``: ``with SyncClient([...], identity, "alice") as client: ...``.

    The whole ``Client`` API, blocking: every method has the meaning, arguments and errors
    of the ``Client`` method of the same name (only SDK errors, ``Closed`` after
    ``close()``). What differs, because blocking code cannot ``await`` or ``async for``:

    - ``watch()`` returns a ``SyncWatch`` and ``incoming()`` a ``SyncIncoming``: blocking
      iterators with ``next(timeout)``. ``incoming()`` starts listening as soon as it
      returns (the async one listens only while iterated), so one thread can listen,
      connect elsewhere, and collect the connection later.
    - ``connect()`` and ``incoming()`` give ``SyncPeerConnection`` objects, whose streams
      (``SyncStream``) read and write blocking, with timeouts.
    - ``wait_listening(timeout)`` takes a timeout (the async one is bounded by the
      caller's ``asyncio.timeout``).
    - The event loop lives in a daemon thread that ``close()`` stops: afterwards every
      method raises ``Closed``, iterators obtained earlier end (``next()`` returns
      ``None``) and connections' operations raise ``Closed``. Callbacks
      (``on_renewal_error``) run in that thread and must not call the client back.

    Attributes:
        client: the async ``Client`` underneath (use it only from the loop thread).
    """

    def __init__(
        self,
        targets: Sequence[str] | str,
        identity: Identity,
        handle: str,
        *,
        pin_store: PinStore | None = None,
        config: ClientConfig | None = None,
        on_renewal_error: RenewalErrorHandler | None = None,
        write_observer: WriteObserver | None = None,
    ) -> None:
        self._loop = LoopThread()

        async def build() -> Client:  # grpc.aio channels belong to the loop they start in
            return Client(
                targets,
                identity,
                handle,
                pin_store=pin_store,
                config=config,
                on_renewal_error=on_renewal_error,
                write_observer=write_observer,  # called on the client's loop thread
            )

        self.client = self._loop.run(build())

    # ------------------------------------------------------------------ state

    @property
    def handle(self) -> str:
        """The handle this client acts for."""
        return self.client.handle

    @property
    def identity(self) -> Identity:
        """The account key this client signs with."""
        return self.client.identity

    @property
    def config(self) -> ClientConfig:
        """The ``ClientConfig`` in use."""
        return self.client.config

    @property
    def pins(self) -> PinStore:
        """The ``PinStore`` holding the account keys pinned on first use."""
        return self.client.pins

    @property
    def contacts(self) -> ContactsCache:
        """Lookups of watched handles answered from the watch (``Client.contacts``)."""
        return self.client.contacts

    @property
    def current_target(self) -> str:
        """The supernode the client talks to now (it moves on when one fails)."""
        return self.client.current_target

    @property
    def routing(self) -> Routing:
        """The ring epoch followed and where handle-keyed calls went (``Client.routing``)."""
        return self.client.routing

    # ------------------------------------------------------------------ account

    def create_account(self, display_name: str = "", *, discoverable: bool = True) -> Account:
        """Create this client's account; see ``Client.create_account``."""
        return self._loop.run(self.client.create_account(display_name, discoverable=discoverable))

    def get_account(self, handle: str) -> Account:
        """A handle's public account (pinned on first use); see ``Client.get_account``."""
        return self._loop.run(self.client.get_account(handle))

    def get_privacy(self) -> PrivacySettings:
        """This account's privacy settings; see ``Client.get_privacy``."""
        return self._loop.run(self.client.get_privacy())

    def set_privacy(
        self,
        visibility: Visibility,
        *,
        allowed: Iterable[str] = (),
        blocked: Iterable[str] = (),
    ) -> PrivacySettings:
        """Who may see this account and send it offers; see ``Client.set_privacy``."""
        return self._loop.run(self.client.set_privacy(visibility, allowed=allowed, blocked=blocked))

    def rotate_key(self, new_identity: Identity) -> Account:
        """Move this account to a new key; see ``Client.rotate_key``."""
        return self._loop.run(self.client.rotate_key(new_identity))

    def login(self) -> None:
        """Log in now (optional: every call logs in by itself)."""
        self._loop.run(self.client.login())

    def revoke_sessions(self) -> int:
        """End every session of this account on every device; see
        ``Client.revoke_sessions``."""
        return self._loop.run(self.client.revoke_sessions())

    # ------------------------------------------------------------------ own devices

    def register_device(
        self,
        device_id: str,
        *,
        transport_key: bytes,
        endpoints: Iterable[Endpoint] = (),
        status: DeviceStatus = DeviceStatus.ONLINE,
        capabilities: Iterable[str] = (),
        ttl: int | None = None,
    ) -> Registration:
        """Publish a device's signed record and keep its lease alive in the background;
        see ``Client.register_device``."""
        return self._loop.run(
            self.client.register_device(
                device_id,
                transport_key=transport_key,
                endpoints=endpoints,
                status=status,
                capabilities=capabilities,
                ttl=ttl,
            )
        )

    def update_device(
        self,
        device_id: str,
        *,
        status: DeviceStatus | None = None,
        endpoints: Iterable[Endpoint] | None = None,
        capabilities: Iterable[str] | None = None,
        transport_key: bytes | None = None,
    ) -> Registration:
        """Publish a change to a registered device now; see ``Client.update_device``."""
        return self._loop.run(
            self.client.update_device(
                device_id,
                status=status,
                endpoints=endpoints,
                capabilities=capabilities,
                transport_key=transport_key,
            )
        )

    def update_status(self, device_id: str, status: DeviceStatus) -> Registration:
        """Publish a new status for a registered device now."""
        return self._loop.run(self.client.update_status(device_id, status))

    def registration(self, device_id: str) -> Registration | None:
        """The latest lease granted to one of our devices; ``None`` if not registered."""
        return self._loop.call(lambda: self.client.registration(device_id))

    def unregister_device(self, device_id: str) -> bool:
        """Stop renewing and remove the device now; False if it was already gone."""
        return self._loop.run(self.client.unregister_device(device_id))

    # ------------------------------------------------------------------ others

    def lookup(self, handle: str, consistency: Consistency = Consistency.ONE) -> Presence:
        """A handle's account and verified live devices; ``NotFound`` if no account."""
        return self._loop.run(self.client.lookup(handle, consistency))

    def lookup_many(
        self, handles: Sequence[str], consistency: Consistency = Consistency.ONE
    ) -> dict[str, Presence | None]:
        """Several handles in one call; ``None`` for a handle with no account."""
        return self._loop.run(self.client.lookup_many(handles, consistency))

    def search(self, query: str, limit: int = 0) -> list[SearchResult]:
        """Discoverable accounts matching ``query``, best first; see ``Client.search``."""
        return self._loop.run(self.client.search(query, limit))

    def watch(self, handles: Iterable[str]) -> SyncWatch:
        """Follow the presence of ``handles``: ``for event in client.watch([...])``."""

        async def start() -> Watch:  # the watch's task must start inside the loop
            return self.client.watch(handles)

        return SyncWatch(self._loop.run(start()), self._loop)

    # ------------------------------------------------------------------ peer to peer

    def enable_peer_to_peer(
        self,
        device_id: str,
        transport_key: Ed25519PrivateKey,
        settings: P2PSettings | None = None,
    ) -> None:
        """Connect to peers and accept their connections as ``device_id`` (a device
        registered with ``transport_key``'s public key); see ``Client.enable_peer_to_peer``."""
        self._loop.call(lambda: self.client.enable_peer_to_peer(device_id, transport_key, settings))

    def connect(self, handle: str, device: str | None = None) -> SyncPeerConnection:
        """A connection to ``handle``'s ``device`` (any live one when None), direct or
        relayed; ``PeerToPeerNotEnabled`` before :meth:`enable_peer_to_peer`."""
        connection = self._loop.run(self.client.connect(handle, device))
        return SyncPeerConnection(self._loop, connection)

    def incoming(self, accept: Callable[[IncomingOffer], bool] | None = None) -> SyncIncoming:
        """Start listening for peers now; ``for conn in client.incoming(): ...`` or
        ``incoming.next(timeout)``. Accepts the offers of ``P2PSettings.auto_accept``
        handles and those ``accept(offer)`` says yes to (it runs on the client's loop
        thread: keep it quick), declines the rest (see ``Client.incoming``).
        ``PeerToPeerNotEnabled`` before :meth:`enable_peer_to_peer`. One at a time per
        device; ``close()`` it to stop."""

        def wrap(connection: PeerConnection) -> SyncPeerConnection:
            return SyncPeerConnection(self._loop, connection)

        return SyncIncoming(self._loop, self._loop.call(lambda: self.client.incoming(accept)), wrap)

    def offers(self) -> SyncOffers:
        """Start listening for peers now, yielding each offer unanswered:
        ``for offer in client.offers(): conn = offer.accept()``; see ``Client.offers``."""

        def wrap(offer: IncomingOffer) -> SyncOffer:
            return SyncOffer(self._loop, offer)

        return SyncOffers(self._loop, self._loop.call(self.client.offers), wrap)

    def wait_listening(self, timeout: float | None = None) -> None:
        """Block until offers can reach this device (its ``incoming()`` is listening on
        a supernode); ``TimeoutError`` after ``timeout`` seconds."""
        self._loop.run(self.client.wait_listening(), timeout)

    @property
    def listener(self) -> Listener:
        """This device's listener (``reconnects``: Listen streams reopened); wait on it
        with :meth:`wait_listening`."""
        return self._loop.call(lambda: self.client.listener)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the client (unregistering its devices) and stop the loop thread; safe
        to call twice."""
        if self._loop.stopped:
            return
        try:
            self._loop.run(self.client.close())
        finally:
            self._loop.stop()

    def logout(self) -> None:
        """Log out (the session's token is refused from then on), close the client and
        stop the loop thread; see ``Client.logout``."""
        if self._loop.stopped:
            return
        try:
            self._loop.run(self.client.logout())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
