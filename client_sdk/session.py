"""A logged-in presence on the supernodes of ``targets``: channels, tokens, retries, failover.

Every unary call of the client goes through :meth:`Session.call`, the one place that knows
how to retry: a per-attempt gRPC deadline, failover to the next target on UNAVAILABLE or
DEADLINE_EXCEEDED with jittered exponential backoff, one fresh login when a token is
refused, and a wait of at least the server's hint when an overloaded target shed the call
(then a retry on that target: ``client_sdk.retry``). Tokens are kept per target
(independent supernodes have independent secrets) and renewed by logging in again shortly
before they expire, so the app never handles them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from client_sdk.config import ClientConfig
from client_sdk.errors import Closed, Unavailable, error_from_rpc, retry_hint_of
from client_sdk.identity import Identity
from client_sdk.retry import FAILOVER_CODES, Action, after_failure
from client_sdk.ring import Ring, RingError
from client_sdk.timing import token_refresh_at_ms
from client_sdk.tls import ChannelSecurity
from client_sdk.transport import DirectoryConnection

T = TypeVar("T")
# One attempt of a call: gets the connection to use and the deadline (seconds) to pass on.
Operation = Callable[[DirectoryConnection, float], Awaitable[T]]


def unreachable(address: str, exc: OSError) -> grpc.aio.AioRpcError:
    """UNAVAILABLE for a target whose certificate could not be read (pinning), so the
    retry loop fails over and backs off exactly as for a channel that cannot connect."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"{address}: cannot read its TLS certificate ({exc})",
    )


@dataclass
class _Target:
    address: str
    connection: DirectoryConnection | None = None
    refresh_at_ms: int = 0
    login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Session:
    """Channels to every target (opened lazily) and the account's login on each."""

    def __init__(
        self,
        targets: Sequence[str],
        identity: Identity,
        handle: str,
        config: ClientConfig,
        *,
        clock_ms: Callable[[], int],
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        addresses = list(dict.fromkeys(targets))
        if not addresses:
            raise ValueError("targets: at least one supernode address (host:port)")
        self._targets = [_Target(address) for address in addresses]
        self._current = 0
        self.identity = identity
        self.handle = handle
        self.config = config
        self.clock_ms = clock_ms
        self.rng = rng
        self._sleep = sleep
        self._closed = False
        # The ring (client_sdk.ring): learned after the first authenticated call when the
        # config allows it and the supernode is in a cluster; None means the plain path.
        self.ring: Ring | None = None
        self._ring_asked = False
        self._ring_lock = asyncio.Lock()
        self._spread = rng.randrange(1 << 16)
        self._security = ChannelSecurity(config.tls, plaintext=config.plaintext)
        self.sent_to_replica = 0  # handle-keyed calls answered by a replica of the handle
        self.sent_elsewhere = 0  # handle-keyed calls answered by another node

    @property
    def current_target(self) -> str:
        return self._targets[self._current].address

    @property
    def closed(self) -> bool:
        return self._closed

    def _target(self, address: str) -> _Target:
        return next(t for t in self._targets if t.address == address)

    def _target_for(self, handle: str) -> _Target | None:
        """The replica of ``handle`` to try first (added to the targets when new)."""
        if self.ring is None:
            return None
        address = self.ring.target_for(handle, self._spread)
        for target in self._targets:
            if target.address == address:
                return target
        target = _Target(address)
        self._targets.append(target)
        return target

    async def _follow_ring(self, connection: DirectoryConnection) -> None:
        """Learn the ring once, and again whenever an answer showed a newer epoch.
        Best effort: a node that cannot say keeps the client on what it knew."""
        known = 0 if self.ring is None else self.ring.epoch
        if self._ring_asked and connection.epoch_seen <= known:
            return
        async with self._ring_lock:  # concurrent calls that saw it share one refresh
            known = 0 if self.ring is None else self.ring.epoch
            if self._ring_asked and connection.epoch_seen <= known:
                return
            self._ring_asked = True
            try:
                answer = await connection.get_placement(deadline=self.config.call_deadline_seconds)
                ring = Ring.from_response(answer)
            except (grpc.aio.AioRpcError, RingError):
                return
            if ring is None or ring.epoch >= known:
                self.ring = ring

    async def _connection(self, target: _Target, deadline: float) -> DirectoryConnection:
        if target.connection is None:
            try:
                credentials = await self._security.credentials(target.address, deadline)
            except OSError as exc:  # a pinned target not reached: as any unreachable one
                raise unreachable(target.address, exc) from exc
            if target.connection is None:  # a concurrent call may have opened it meanwhile
                target.connection = DirectoryConnection(
                    target.address,
                    options=(*self.config.channel_options, *self.config.tls.channel_options()),
                    credentials=credentials,
                )
        return target.connection

    def failover(self, from_address: str) -> None:
        """Move on to the next target, unless a concurrent call has moved already."""
        if self._targets[self._current].address == from_address:
            self._current = (self._current + 1) % len(self._targets)

    def forget_token(self, address: str) -> None:
        target = self._target(address)
        target.refresh_at_ms = 0
        if target.connection is not None:
            target.connection.token = None

    def forget_tokens(self) -> None:
        """Every target logs in again on its next call (after a revocation)."""
        for target in self._targets:
            self.forget_token(target.address)

    async def backoff(self, failures: int) -> None:
        await self._sleep(self.config.backoff.delay(failures, self.rng))

    async def wait_pushback(self, pushback_ms: int, failures: int) -> None:
        """Wait as an overloaded target asked: at least its hint, capped
        (:meth:`client_sdk.backoff.Backoff.after_pushback`)."""
        await self._sleep(self.config.backoff.after_pushback(pushback_ms, failures, self.rng))

    async def _ready(
        self, target: _Target, authenticated: bool, deadline: float
    ) -> DirectoryConnection:
        connection = await self._connection(target, deadline)
        if authenticated and self._needs_login(target, connection):
            async with target.login_lock:  # concurrent calls share one login
                if self._needs_login(target, connection):
                    response = await connection.login(self.identity, self.handle, deadline=deadline)
                    margin_ms = int(self.config.token_refresh_margin_seconds * 1000)
                    target.refresh_at_ms = token_refresh_at_ms(
                        self.clock_ms(), response.expires_at_ms, margin_ms
                    )
        return connection

    def _needs_login(self, target: _Target, connection: DirectoryConnection) -> bool:
        return connection.token is None or self.clock_ms() >= target.refresh_at_ms

    async def call(
        self,
        operation: Operation[T],
        *,
        authenticated: bool = True,
        attempts: int | None = None,
        deadline: float | None = None,
        handle: str | None = None,
    ) -> T:
        """Run ``operation`` until it succeeds, fails for good, or attempts run out.

        ``handle``: the call is about that handle; with a ring, the first attempt goes to
        one of its replicas (the others follow the failover order).

        Raises the mapped ``SupernodeError`` for an answer, ``Overloaded`` when the last
        of ``attempts`` tries was shed by an overloaded target, or ``Unavailable`` when no
        target answered in ``attempts`` tries.
        """
        attempts = attempts or self.config.max_attempts
        deadline = deadline or self.config.call_deadline_seconds
        relogged_in = False
        failures = 0
        last: grpc.aio.AioRpcError | None = None
        last_action = Action.FAIL
        while failures < attempts:
            if self._closed:
                raise Closed("the client is closed")
            routed = self._target_for(handle) if handle and not failures else None
            target = routed or self._targets[self._current]
            try:
                connection = await self._ready(target, authenticated, deadline)
                result = await operation(connection, deadline)
            except grpc.aio.AioRpcError as exc:
                hint = retry_hint_of(exc, self.config.backoff.pushback_cap_seconds)
                action = after_failure(
                    exc.code(),
                    authenticated=authenticated,
                    relogged_in=relogged_in,
                    pushback_ms=hint,
                )
                if action is Action.FAIL:
                    raise error_from_rpc(exc) from exc
                last, last_action = exc, action
                if action is Action.RELOGIN:
                    relogged_in = True
                    self.forget_token(target.address)
                    continue
                failures += 1
                if action is Action.WAIT:  # stay: our token is good there
                    assert hint is not None
                    if failures < attempts:
                        await self.wait_pushback(hint, failures - 1)
                    continue
                self.failover(target.address)
                if failures < attempts:
                    await self.backoff(failures - 1)
            else:
                if handle and self.ring is not None:
                    if self.ring.holds(target.address, handle):
                        self.sent_to_replica += 1
                    else:
                        self.sent_elsewhere += 1
                if authenticated and self.config.ring_aware:
                    await self._follow_ring(connection)
                return result
        assert last is not None
        if last_action is Action.WAIT:
            raise error_from_rpc(last) from last  # Overloaded, with the last hint
        raise Unavailable(
            f"no supernode answered in {attempts} attempts "
            f"({', '.join(t.address for t in self._targets)}); last: "
            f"{last.code().name} {last.details() or ''}".rstrip(),
            code=last.code(),
        )

    async def logout(self) -> None:
        """End this client's session on every target it holds a token for, each tried
        twice; a session already ended there counts as done. Raises the last failure once
        every target was tried (that token then stays valid until it expires)."""
        last: grpc.aio.AioRpcError | None = None
        for target in self._targets:
            connection = target.connection
            if connection is None or connection.token is None:
                continue
            failure = await self._logout_at(connection)
            self.forget_token(target.address)
            last = failure or last
        if last is not None:
            raise error_from_rpc(last) from last

    async def _logout_at(self, connection: DirectoryConnection) -> grpc.aio.AioRpcError | None:
        failure: grpc.aio.AioRpcError | None = None
        for _ in range(2):
            try:
                await connection.logout(deadline=self.config.call_deadline_seconds)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return None  # ended already (expired, revoked)
                failure = exc
                if exc.code() not in FAILOVER_CODES:
                    return failure
            else:
                return None
        return failure

    async def connection(self) -> DirectoryConnection:
        """A logged-in connection to the current target, for opening a stream on it."""

        async def ready(connection: DirectoryConnection, deadline: float) -> DirectoryConnection:
            return connection

        return await self.call(ready)

    async def close(self) -> None:
        self._closed = True
        for target in self._targets:
            if target.connection is not None:
                await target.connection.close()
                target.connection = None
