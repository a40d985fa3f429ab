"""The ``supernode.v1`` account, session and presence services."""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeAlias, TypeVar

import grpc

from client_sdk.protocol import wire
from client_sdk.protocol.partition import EPOCH_METADATA
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle
from supernode.directory.accounts import Accounts
from supernode.directory.presence import Registration
from supernode.directory.privacy import Privacy
from supernode.errors import InvalidArgument, PermissionDenied, Reason, Unauthenticated, Unavailable
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.revocations import RevocationSink
from supernode.rpc.auth import session_of
from supernode.rpc.handlers import unary_handler
from supernode.rpc.source import CallGate, RateGates
from supernode.sessions import SessionAuthority

ACCOUNT_SERVICE = "supernode.v1.AccountService"
SESSION_SERVICE = "supernode.v1.SessionService"
PRESENCE_SERVICE = "supernode.v1.PresenceService"

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")


class PresenceApi(Protocol):
    """What the edge calls: a node alone answers at once (``Presence``); a cluster member
    (``supernode.cluster.routing.ClusterPresence``) may have to ask another node first."""

    def register(
        self, session_handle: str, signed: pb.SignedDeviceRecord
    ) -> Registration | Awaitable[Registration]: ...

    def unregister(
        self, session_handle: str, device_id: str, at_least_seq: int = 0
    ) -> bool | Awaitable[bool]: ...

    def keep_alive(
        self, session_handle: str, device_id: str, seq: int
    ) -> Registration | Awaitable[Registration]: ...

    def lookup(self, handle: str, quorum: bool = False) -> bytes | Awaitable[bytes]: ...

    def lookup_many(
        self, handles: Sequence[str], quorum: bool = False
    ) -> bytes | Awaitable[bytes]: ...


class RingSource(Protocol):
    """A clustered node's placement, for ring-aware clients (``cluster.ring_answer``)."""

    def epoch(self) -> int: ...

    def response(self) -> bytes: ...


def _quorum(consistency: int) -> bool:
    if consistency not in pb.Consistency.values():
        raise InvalidArgument(
            f"consistency: {consistency} is not a known Consistency", reason=Reason.INVALID_FIELD
        )
    return consistency == pb.CONSISTENCY_QUORUM


async def settled(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class DirectoryApi:
    """Translates calls to domain operations; owns no state of its own."""

    def __init__(
        self,
        accounts: Accounts,
        presence: PresenceApi,
        sessions: SessionAuthority,
        metrics: Metrics,
        shedding: Shedding | None = None,
        ring: RingSource | None = None,
        revoker: RevocationSink | None = None,
        gates: RateGates | None = None,
        *,
        privacy: Privacy,
    ) -> None:
        """``ring``: a cluster member's placement; presence answers then carry its epoch.
        ``revoker``: where Logout and RevokeSessions make a revocation durable (None in a
        worker process, which forwards them to its primary).
        ``gates``: the process's rate limits (``supernode.rate``; none when not given).
        ``privacy``: who may see whom; every presence answer passes through it."""
        self._ring = ring
        self._revoker = revoker
        self._privacy = privacy
        self._gates = gates = gates or RateGates.off()
        self._failures = gates.limiter.login_failures
        self._create_gate = gates.gate("CreateAccount")
        self._get_account_gate = gates.gate("GetAccount")
        self._challenge_gate = gates.gate("GetChallenge")
        self._login_gate = gates.gate("Login")
        self._logout_gate = gates.gate("Logout")
        self._revoke_gate = gates.gate("RevokeSessions")
        self._register_gate = gates.gate("RegisterDevice")
        self._unregister_gate = gates.gate("UnregisterDevice")
        self._keep_alive_gate = gates.gate("KeepAlive")
        self._lookup_gate = gates.gate("Lookup")
        self._lookup_many_gate = gates.gate("LookupMany")
        self._set_privacy_gate = gates.gate("SetPrivacy")
        self._get_privacy_gate = gates.gate("GetPrivacy")
        self._rotate_gate = gates.gate("RotateKey")
        self._accounts = accounts
        self._presence = presence
        self._sessions = sessions
        self._metrics = metrics
        self._shedding = shedding  # None: nothing is shed (supernode.overload)

    def method_handlers(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        m, s = self._metrics, self._shedding
        return {
            ACCOUNT_SERVICE: {
                "CreateAccount": unary_handler(
                    "CreateAccount", pb.CreateAccountRequest, self.create_account, m, s
                ),
                "GetAccount": unary_handler(
                    "GetAccount", pb.GetAccountRequest, self.get_account, m, s
                ),
                "SetPrivacy": unary_handler(
                    "SetPrivacy", pb.SetPrivacyRequest, self.set_privacy, m, s
                ),
                "GetPrivacy": unary_handler(
                    "GetPrivacy", pb.GetPrivacyRequest, self.get_privacy, m, s
                ),
                "RotateKey": unary_handler("RotateKey", pb.RotateKeyRequest, self.rotate_key, m, s),
            },
            SESSION_SERVICE: {
                "GetChallenge": unary_handler(
                    "GetChallenge", pb.GetChallengeRequest, self.get_challenge, m, s
                ),
                "Login": unary_handler("Login", pb.LoginRequest, self.login, m, s),
                "Logout": unary_handler("Logout", pb.LogoutRequest, self.logout, m, s),
                "RevokeSessions": unary_handler(
                    "RevokeSessions", pb.RevokeSessionsRequest, self.revoke_sessions, m, s
                ),
            },
            PRESENCE_SERVICE: {
                "RegisterDevice": unary_handler(
                    "RegisterDevice", pb.RegisterDeviceRequest, self.register_device, m, s
                ),
                "UnregisterDevice": unary_handler(
                    "UnregisterDevice", pb.UnregisterDeviceRequest, self.unregister_device, m, s
                ),
                "KeepAlive": unary_handler("KeepAlive", pb.KeepAliveRequest, self.keep_alive, m, s),
                "Lookup": unary_handler("Lookup", pb.LookupRequest, self.lookup, m, s),
                "GetPlacement": unary_handler(
                    "GetPlacement", pb.GetPlacementRequest, self.get_placement, m, s
                ),
                "LookupMany": unary_handler(
                    "LookupMany", pb.LookupManyRequest, self.lookup_many, m, s
                ),
            },
        }

    # ------------------------------------------------------------------ accounts

    async def create_account(self, request: pb.CreateAccountRequest, context: Context) -> bytes:
        self._create_gate.check(context)
        account = await self._accounts.create(request.account, request.signature)
        stored = self._accounts.get(account.handle)
        return wire.get_account_response(stored.account, account_signature=stored.signature)

    def get_account(self, request: pb.GetAccountRequest, context: Context) -> bytes:
        self._get_account_gate.check(context)
        stored = self._accounts.get(request.handle)
        rotations = self._accounts.rotations(request.handle)
        return wire.get_account_response(stored.account, rotations, stored.signature)

    async def set_privacy(
        self, request: pb.SetPrivacyRequest, context: Context
    ) -> pb.SetPrivacyResponse:
        session = session_of(context, self._sessions)
        self._set_privacy_gate.check(context, session.handle)
        settings = await self._privacy.set(session.handle, request.settings, request.signature)
        return pb.SetPrivacyResponse(settings=settings)

    def get_privacy(self, request: pb.GetPrivacyRequest, context: Context) -> pb.GetPrivacyResponse:
        session = session_of(context, self._sessions)
        self._get_privacy_gate.check(context, session.handle)
        return pb.GetPrivacyResponse(settings=self._privacy.get(session.handle))

    async def rotate_key(
        self, request: pb.RotateKeyRequest, context: Context
    ) -> pb.RotateKeyResponse:
        session = session_of(context, self._sessions)
        self._rotate_gate.check(context, session.handle)
        chain = await self._accounts.rotate(session.handle, request.rotation)
        # Sessions opened with the old key end with it (this one too: the client logs in
        # again with the new key). Published after the rotation is stored; a failure here
        # is retried with the same statement, which then only revokes.
        await self._sink().publish(self._sessions.revoke_issued_until_now(session.handle))
        self._metrics.sessions_revoked.labels("rotation").inc()
        return pb.RotateKeyResponse(
            rotations=[pb.SignedKeyRotation.FromString(raw) for raw in chain]
        )

    # ------------------------------------------------------------------ sessions

    def get_challenge(
        self, request: pb.GetChallengeRequest, context: Context
    ) -> pb.GetChallengeResponse:
        check_handle("handle", request.handle)  # before it keys a bucket: bounded in size
        self._challenge_gate.check(context, request.handle)
        self._accounts.get(request.handle)  # NOT_FOUND early: no challenge for nobody
        challenge, expires_at_ms = self._sessions.challenge(request.handle)
        return pb.GetChallengeResponse(challenge=challenge, expires_at_ms=expires_at_ms)

    def login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        issued = self._redeemed(self._login_gate, request, context, self._sessions.login)
        return pb.LoginResponse(token=issued.token, expires_at_ms=issued.expires_at_ms)

    def _redeemed(
        self,
        gate: CallGate,
        request: pb.LoginRequest | pb.RevokeSessionsRequest,
        context: Context,
        redeem: Callable[[str, bytes, bytes, bytes], T],
    ) -> T:
        """``redeem`` a challenge signed with the account key, within the caller's limits:
        the handle is checked before it keys a bucket (bounded in size), a locked-out
        caller gets no signature check, and a failed one counts towards the lockout."""
        check_handle("handle", request.handle)
        source = self._gates.source(context)
        gate.check(context, request.handle)
        self._failures.check(source, request.handle)
        account_key = self._accounts.account_key(request.handle)
        try:
            return redeem(request.handle, request.challenge, request.signature, account_key)
        except (Unauthenticated, PermissionDenied):
            self._failures.failed(source, request.handle)
            raise

    def _sink(self) -> RevocationSink:
        if self._revoker is None:
            raise Unavailable(
                "sessions: this process cannot revoke sessions, try again", reason=Reason.NOT_READY
            )
        return self._revoker

    async def logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        session = session_of(context, self._sessions)
        self._logout_gate.check(context, session.handle)
        await self._sink().publish(self._sessions.logout(session))
        self._metrics.sessions_revoked.labels("logout").inc()
        return pb.LogoutResponse()

    async def revoke_sessions(
        self, request: pb.RevokeSessionsRequest, context: Context
    ) -> pb.RevokeSessionsResponse:
        revocation = self._redeemed(self._revoke_gate, request, context, self._sessions.revoke_all)
        await self._sink().publish(revocation)
        self._metrics.sessions_revoked.labels("account").inc()
        return pb.RevokeSessionsResponse(revoked_before_ms=revocation.cutoff_ms)

    # ------------------------------------------------------------------ presence

    def _tell_epoch(self, context: Context) -> None:
        """A ring-aware client compares this with the epoch it routes by."""
        if self._ring is not None:
            context.set_trailing_metadata(((EPOCH_METADATA, str(self._ring.epoch())),))

    def get_placement(self, request: pb.GetPlacementRequest, context: Context) -> bytes:
        session_of(context, self._sessions)
        if self._ring is None:
            return pb.GetPlacementResponse().SerializeToString()  # epoch 0: no ring
        return self._ring.response()

    async def register_device(
        self, request: pb.RegisterDeviceRequest, context: Context
    ) -> pb.RegisterDeviceResponse:
        session = session_of(context, self._sessions)
        self._register_gate.check(context, session.handle)
        self._tell_epoch(context)
        registration = await settled(self._presence.register(session.handle, request.signed))
        return pb.RegisterDeviceResponse(
            expires_at_ms=registration.expires_at_ms, ttl_seconds=registration.ttl_seconds
        )

    async def keep_alive(
        self, request: pb.KeepAliveRequest, context: Context
    ) -> pb.KeepAliveResponse:
        session = session_of(context, self._sessions)
        self._keep_alive_gate.check(context, session.handle)
        self._tell_epoch(context)
        registration = await settled(
            self._presence.keep_alive(session.handle, request.device_id, request.seq)
        )
        return pb.KeepAliveResponse(
            expires_at_ms=registration.expires_at_ms, ttl_seconds=registration.ttl_seconds
        )

    async def unregister_device(
        self, request: pb.UnregisterDeviceRequest, context: Context
    ) -> pb.UnregisterDeviceResponse:
        session = session_of(context, self._sessions)
        self._unregister_gate.check(context, session.handle)
        self._tell_epoch(context)
        removed = await settled(
            self._presence.unregister(session.handle, request.device_id, request.seq)
        )
        return pb.UnregisterDeviceResponse(removed=removed)

    def lookup(self, request: pb.LookupRequest, context: Context) -> bytes | Awaitable[bytes]:
        session = session_of(context, self._sessions)
        self._lookup_gate.check(context, session.handle)
        self._tell_epoch(context)
        if not self._privacy.may_see(session.handle, request.handle):
            _quorum(request.consistency)  # the same INVALID_ARGUMENT as for anyone
            answer = self._privacy.offline_answer(request.handle)
            self._metrics.count_hidden("Lookup")
            return answer
        if request.consistency:
            return self._presence.lookup(request.handle, _quorum(request.consistency))
        return self._presence.lookup(request.handle)

    def lookup_many(
        self, request: pb.LookupManyRequest, context: Context
    ) -> bytes | Awaitable[bytes]:
        session = session_of(context, self._sessions)
        # The handles answered, not the calls: each distinct handle costs one.
        self._lookup_many_gate.check(context, session.handle, len(set(request.handles)))
        self._tell_epoch(context)
        answer = self._presence.lookup_many(request.handles, _quorum(request.consistency))
        if isinstance(answer, bytes):  # a node alone: no coroutine on the hot path
            return self._visible_many(session.handle, request.handles, answer)
        return self._privacy_applied(session.handle, request.handles, answer)

    def _visible_many(self, caller: str, handles: Sequence[str], answer: bytes) -> bytes:
        visible, hidden = self._privacy.visible_many(caller, handles, answer)
        self._metrics.count_hidden("LookupMany", hidden)
        return visible

    async def _privacy_applied(
        self, caller: str, handles: Sequence[str], answer: bytes | Awaitable[bytes]
    ) -> bytes:
        return self._visible_many(caller, handles, await settled(answer))
