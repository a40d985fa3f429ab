"""One of our devices on the directory: sign its record, register it, keep its lease alive.

A lease ends unless renewed. While the device's record is unchanged, a renewal is a
``KeepAlive`` of the record registered last: no new signature, and for the supernode no
signature check and no watch event. Whenever the supernode cannot extend it (the record
changed, the lease ended, a supernode lost its data: ``FAILED_PRECONDITION``), or the spec
changed, the renewal is a re-registration with a higher ``seq``, the same code path as the
first registration, a status change, and recovery after a supernode restart or a lost token
(``Session.call`` logs in again; the record is re-signed with a fresh ``seq`` and
``issued_at`` on every attempt, so a retry is never refused as a replay). Renewal runs in a
background task at a jittered fraction of the granted TTL; a failure is retried with
backoff, but never later than the lease's end (nor sooner than an overloaded supernode's
retry hint: ``client_sdk.timing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from client_sdk.convert import device_record_pb
from client_sdk.errors import Closed, RateLimited, Stale, SupernodeError
from client_sdk.session import Session
from client_sdk.timing import next_renewal_delay, next_seq
from client_sdk.transport import DirectoryConnection, sign_device_record
from client_sdk.types import DeviceStatus, Endpoint, Registration
from client_sdk.write_log import WriteAttempt, WriteKind, WriteObserver, observed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSpec:
    """What a device publishes about itself; every registration signs the current spec."""

    device_id: str
    transport_key: bytes
    endpoints: tuple[Endpoint, ...] = ()
    status: DeviceStatus = DeviceStatus.ONLINE
    capabilities: tuple[str, ...] = ()
    ttl_seconds: int = 60


class DeviceLease:
    """Keeps one device registered until :meth:`stop`.

    ``registration`` is the latest lease granted; ``last_error`` the latest renewal
    failure (cleared by the next success), for apps that surface connectivity.
    """

    def __init__(
        self,
        session: Session,
        spec: DeviceSpec,
        on_error: Callable[[DeviceLease, SupernodeError], None] | None = None,
        observer: WriteObserver | None = None,
    ) -> None:
        self._session = session
        self.spec = spec
        self._on_error = on_error
        self._observer = observer
        self._last_seq = 0
        self._lock = asyncio.Lock()  # one registration at a time, so seqs arrive in order
        self._reschedule = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0  # consecutive failed registrations; 0 after a success
        self.registration: Registration | None = None
        self.last_error: SupernodeError | None = None

    @property
    def device_id(self) -> str:
        return self.spec.device_id

    @property
    def last_seq(self) -> int:
        """The highest seq sent for this device, answered or not (0 before the first)."""
        return self._last_seq

    async def register(self) -> Registration:
        """Sign the current spec and register it now (first registration or an update)."""
        return await self._settled(self._register_once)

    async def _register_once(
        self, connection: DirectoryConnection, deadline: float
    ) -> Registration:
        session = self._session
        now_ms = session.clock_ms()
        self._last_seq = next_seq(self._last_seq, now_ms)
        record = device_record_pb(
            handle=session.handle,
            device_id=self.spec.device_id,
            seq=self._last_seq,
            issued_at_ms=now_ms,
            ttl_seconds=self.spec.ttl_seconds,
            endpoints=self.spec.endpoints,
            transport_key=self.spec.transport_key,
            status=self.spec.status,
            capabilities=self.spec.capabilities,
        )
        signed = sign_device_record(session.identity, record)
        attempt = WriteAttempt(
            session.handle,
            self.spec.device_id,
            WriteKind.REGISTER,
            self._last_seq,
            connection.target,
        )
        response = await observed(
            self._observer,
            attempt,
            lambda: connection.register_device(signed, deadline=deadline),
            lambda answer: answer.expires_at_ms,
        )
        return Registration(
            self.spec.device_id, self._last_seq, response.ttl_seconds, response.expires_at_ms
        )

    async def renew(self) -> Registration:
        """Keep the lease running: a keepalive of the registered record, or, when the
        supernode cannot extend it (or keepalives are off), a new registration."""
        registration = self.registration
        if registration is not None and self._session.config.keepalive:
            try:
                return await self._settled(self._keep_alive_once)
            except Stale as exc:  # the record changed, its lease ended: register anew
                log.info("device %r: %s; registering anew", self.device_id, exc)
        return await self.register()

    async def _settled(
        self, once: Callable[[DirectoryConnection, float], Awaitable[Registration]]
    ) -> Registration:
        """Run ``once`` through the session (retries, failover), one write at a time, and
        keep its answer as the current lease."""
        async with self._lock:
            try:
                registration = await self._session.call(once, handle=self._session.handle)
            except SupernodeError as exc:
                self._failures += 1
                self.last_error = exc
                raise
            self.registration = registration
            self._failures = 0
            self.last_error = None
            return registration

    async def _keep_alive_once(
        self, connection: DirectoryConnection, deadline: float
    ) -> Registration:
        registered = self.registration
        assert registered is not None
        attempt = WriteAttempt(
            self._session.handle,
            self.spec.device_id,
            WriteKind.KEEPALIVE,
            registered.seq,
            connection.target,
        )
        response = await observed(
            self._observer,
            attempt,
            lambda: connection.keep_alive(self.spec.device_id, registered.seq, deadline=deadline),
            lambda answer: answer.expires_at_ms,
        )
        return Registration(
            self.spec.device_id, registered.seq, response.ttl_seconds, response.expires_at_ms
        )

    async def update(self, spec: DeviceSpec) -> Registration:
        """Publish a changed spec (status, endpoints, ...) now and restart the renewal timer.

        If publishing fails, the error is raised and the renewal task keeps retrying the
        new spec with backoff.
        """
        if spec.device_id != self.spec.device_id:
            raise ValueError("a lease keeps its device id")
        self.spec = spec
        try:
            return await self.register()
        finally:
            self._reschedule.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._renew_forever(), name=f"renew {self.device_id}")

    async def stop(self) -> None:
        """Stop renewing (the lease then runs out unless the device is unregistered)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _next_delay(self) -> float:
        session = self._session
        registration = self.registration
        last = self.last_error
        shed = last if isinstance(last, RateLimited) and last.retry_after_seconds else None
        return next_renewal_delay(
            granted_ttl_seconds=None if registration is None else registration.ttl_seconds,
            expires_at_ms=None if registration is None else registration.expires_at_ms,
            failures=self._failures,
            now_ms=session.clock_ms(),
            backoff=session.config.backoff,
            rng=session.rng,
            window=session.config.renew_window,
            pushback_ms=None if shed is None else round((shed.retry_after_seconds or 0) * 1000),
        )

    async def _renew_forever(self) -> None:
        while True:
            self._reschedule.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_delay()):
                    await self._reschedule.wait()
                continue  # update() registered just now (or failed): a new period starts
            try:
                await self.renew()
            except Closed:
                return
            except SupernodeError as exc:
                log.warning("renewing device %r failed (%s); retrying", self.device_id, exc)
                if self._on_error is not None:
                    self._on_error(self, exc)
