"""The thin gRPC layer of the SDK: signs what must be signed, attaches the bearer token.

It speaks generated protobuf types; the app-facing client (with renewal, verification and
pinning) builds on it. Every unary call takes an optional ``deadline`` in seconds, sent as
the gRPC deadline, so the server also stops working on a call the client gave up on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TypeVar

import grpc

from client_sdk.identity import Identity
from client_sdk.protocol.partition import EPOCH_METADATA
from client_sdk.protocol.signing import (
    CREATE_ACCOUNT_DOMAIN,
    DEVICE_RECORD_DOMAIN,
    KEY_ROTATION_DOMAIN,
    KEY_ROTATION_NEW_KEY_DOMAIN,
    LOGIN_DOMAIN,
    PRIVACY_DOMAIN,
    REVOKE_SESSIONS_DOMAIN,
)
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.v1 import directory_pb2_grpc as rpc
from client_sdk.protocol.v1 import search_pb2, search_pb2_grpc

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign_account(
    identity: Identity, handle: str, display_name: str = "", discoverable: bool = True
) -> pb.CreateAccountRequest:
    body = pb.Account(
        handle=handle,
        account_key=identity.public_key,
        display_name=display_name,
        discoverable=discoverable,
        created_at_ms=now_ms(),
    ).SerializeToString()
    return pb.CreateAccountRequest(
        account=body, signature=identity.sign(CREATE_ACCOUNT_DOMAIN, body)
    )


def sign_device_record(identity: Identity, record: pb.DeviceRecord) -> pb.SignedDeviceRecord:
    body = record.SerializeToString()
    return pb.SignedDeviceRecord(record=body, signature=identity.sign(DEVICE_RECORD_DOMAIN, body))


def sign_privacy(identity: Identity, settings: pb.PrivacySettings) -> pb.SetPrivacyRequest:
    body = settings.SerializeToString()
    return pb.SetPrivacyRequest(settings=body, signature=identity.sign(PRIVACY_DOMAIN, body))


def sign_rotation(
    old: Identity, new: Identity, handle: str, seq: int, *, issued_at_ms: int | None = None
) -> pb.SignedKeyRotation:
    """The statement moving ``handle`` from ``old``'s key to ``new``'s, at place ``seq`` of
    its chain (1 for the first rotation), signed by both."""
    body = pb.KeyRotation(
        handle=handle,
        old_key=old.public_key,
        new_key=new.public_key,
        seq=seq,
        issued_at_ms=now_ms() if issued_at_ms is None else issued_at_ms,
    ).SerializeToString()
    return pb.SignedKeyRotation(
        rotation=body,
        signature=old.sign(KEY_ROTATION_DOMAIN, body),
        new_key_signature=new.sign(KEY_ROTATION_NEW_KEY_DOMAIN, body),
    )


def _consistency(quorum: bool) -> pb.Consistency:
    return pb.CONSISTENCY_QUORUM if quorum else pb.CONSISTENCY_UNSPECIFIED


class DirectoryConnection:
    """One gRPC channel to one supernode, with the session token once logged in."""

    def __init__(
        self,
        target: str,
        *,
        options: Sequence[tuple[str, int | str]] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``credentials``: TLS (``client_sdk.tls.ChannelSecurity`` makes them from
        ``ClientConfig``); None is a plaintext channel. This is the raw layer: the
        ``Client`` decides, and is plaintext only when its config says so."""
        self.target = target
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=list(options))
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=list(options))
        self.accounts = rpc.AccountServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.sessions = rpc.SessionServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.presence = rpc.PresenceServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.search_service = search_pb2_grpc.SearchServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.token: str | None = None
        self.epoch_seen = 0  # the newest placement epoch a presence answer carried

    async def _answered(self, call: grpc.aio.UnaryUnaryCall) -> T:
        """The answer of a presence call, noting the placement epoch it carries."""
        response: T = await call
        for key, value in await call.trailing_metadata() or ():
            if key == EPOCH_METADATA:
                with contextlib.suppress(ValueError):  # garbage: the ring stays as it was
                    self.epoch_seen = max(self.epoch_seen, int(value))
        return response

    async def get_placement(self, *, deadline: float | None = None) -> pb.GetPlacementResponse:
        response: pb.GetPlacementResponse = await self.presence.GetPlacement(
            pb.GetPlacementRequest(), metadata=self.metadata, timeout=deadline
        )
        return response

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> DirectoryConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.token is None else (("authorization", f"Bearer {self.token}"),)

    async def create_account(
        self,
        identity: Identity,
        handle: str,
        display_name: str = "",
        discoverable: bool = True,
        *,
        deadline: float | None = None,
    ) -> pb.Account:
        response: pb.CreateAccountResponse = await self.accounts.CreateAccount(
            sign_account(identity, handle, display_name, discoverable), timeout=deadline
        )
        return response.account

    async def get_account(self, handle: str, *, deadline: float | None = None) -> pb.Account:
        response: pb.GetAccountResponse = await self.accounts.GetAccount(
            pb.GetAccountRequest(handle=handle), timeout=deadline
        )
        return response.account

    async def get_account_record(
        self, handle: str, *, deadline: float | None = None
    ) -> pb.GetAccountResponse:
        """The account and its key rotation chain."""
        response: pb.GetAccountResponse = await self.accounts.GetAccount(
            pb.GetAccountRequest(handle=handle), timeout=deadline
        )
        return response

    async def set_privacy(
        self, request: pb.SetPrivacyRequest, *, deadline: float | None = None
    ) -> pb.PrivacySettings:
        response: pb.SetPrivacyResponse = await self.accounts.SetPrivacy(
            request, metadata=self.metadata, timeout=deadline
        )
        return response.settings

    async def get_privacy(self, *, deadline: float | None = None) -> pb.PrivacySettings:
        response: pb.GetPrivacyResponse = await self.accounts.GetPrivacy(
            pb.GetPrivacyRequest(), metadata=self.metadata, timeout=deadline
        )
        return response.settings

    async def rotate_key(
        self, rotation: pb.SignedKeyRotation, *, deadline: float | None = None
    ) -> list[pb.SignedKeyRotation]:
        response: pb.RotateKeyResponse = await self.accounts.RotateKey(
            pb.RotateKeyRequest(rotation=rotation), metadata=self.metadata, timeout=deadline
        )
        return list(response.rotations)

    async def login(
        self, identity: Identity, handle: str, *, deadline: float | None = None
    ) -> pb.LoginResponse:
        challenge, signature = await self._signed_challenge(
            identity, handle, LOGIN_DOMAIN, deadline
        )
        response: pb.LoginResponse = await self.sessions.Login(
            pb.LoginRequest(handle=handle, challenge=challenge, signature=signature),
            timeout=deadline,
        )
        self.token = response.token
        return response

    async def logout(self, *, deadline: float | None = None) -> None:
        """End this connection's session on the supernode (its token is refused after)."""
        await self.sessions.Logout(pb.LogoutRequest(), metadata=self.metadata, timeout=deadline)
        self.token = None

    async def revoke_sessions(
        self, identity: Identity, handle: str, *, deadline: float | None = None
    ) -> pb.RevokeSessionsResponse:
        """End every session of ``handle`` issued until now, on every device: proven by
        signing a fresh challenge with the account key (no token needed)."""
        challenge, signature = await self._signed_challenge(
            identity, handle, REVOKE_SESSIONS_DOMAIN, deadline
        )
        response: pb.RevokeSessionsResponse = await self.sessions.RevokeSessions(
            pb.RevokeSessionsRequest(handle=handle, challenge=challenge, signature=signature),
            timeout=deadline,
        )
        self.token = None
        return response

    async def _signed_challenge(
        self, identity: Identity, handle: str, domain: bytes, deadline: float | None
    ) -> tuple[bytes, bytes]:
        """A fresh challenge for ``handle`` and its signature for ``domain`` (the proof of
        holding the account key that Login and RevokeSessions ask for)."""
        challenge = await self.sessions.GetChallenge(
            pb.GetChallengeRequest(handle=handle), timeout=deadline
        )
        return challenge.challenge, identity.sign(domain, challenge.challenge)

    async def register_device(
        self, signed: pb.SignedDeviceRecord, *, deadline: float | None = None
    ) -> pb.RegisterDeviceResponse:
        response: pb.RegisterDeviceResponse = await self._answered(
            self.presence.RegisterDevice(
                pb.RegisterDeviceRequest(signed=signed), metadata=self.metadata, timeout=deadline
            )
        )
        return response

    async def keep_alive(
        self, device_id: str, seq: int, *, deadline: float | None = None
    ) -> pb.KeepAliveResponse:
        """Extend the lease of our device's record at ``seq`` without signing a new one."""
        response: pb.KeepAliveResponse = await self._answered(
            self.presence.KeepAlive(
                pb.KeepAliveRequest(device_id=device_id, seq=seq),
                metadata=self.metadata,
                timeout=deadline,
            )
        )
        return response

    async def unregister_device(
        self, device_id: str, *, seq: int = 0, deadline: float | None = None
    ) -> bool:
        """``seq``: the highest this client used for the device (the tombstone covers it)."""
        response: pb.UnregisterDeviceResponse = await self._answered(
            self.presence.UnregisterDevice(
                pb.UnregisterDeviceRequest(device_id=device_id, seq=seq),
                metadata=self.metadata,
                timeout=deadline,
            )
        )
        return bool(response.removed)

    async def lookup(
        self, handle: str, *, deadline: float | None = None, quorum: bool = False
    ) -> pb.LookupResponse:
        request = pb.LookupRequest(handle=handle, consistency=_consistency(quorum))
        response: pb.LookupResponse = await self._answered(
            self.presence.Lookup(request, metadata=self.metadata, timeout=deadline)
        )
        return response

    async def lookup_many(
        self, handles: Sequence[str], *, deadline: float | None = None, quorum: bool = False
    ) -> pb.LookupManyResponse:
        request = pb.LookupManyRequest(handles=handles, consistency=_consistency(quorum))
        response: pb.LookupManyResponse = await self._answered(
            self.presence.LookupMany(request, metadata=self.metadata, timeout=deadline)
        )
        return response

    async def search(
        self, query: str, limit: int = 0, *, deadline: float | None = None
    ) -> search_pb2.SearchResponse:
        response: search_pb2.SearchResponse = await self.search_service.Search(
            search_pb2.SearchRequest(query=query, limit=limit),
            metadata=self.metadata,
            timeout=deadline,
        )
        return response

    def watch(
        self, handles: Sequence[str], epoch: str = "", revision: int = 0
    ) -> grpc.aio.UnaryStreamCall:
        """Open a watch stream (no deadline: it lives until cancelled or cut off)."""
        call: grpc.aio.UnaryStreamCall = self.presence.Watch(
            pb.WatchRequest(handles=handles, epoch=epoch, revision=revision),
            metadata=self.metadata,
        )
        return call
