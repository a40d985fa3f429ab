"""Logout and RevokeSessions on a real node: a revoked token is refused with UNAUTHENTICATED
(at once by a node alone; by its workers once their feed says so: polled with a deadline),
still after a restart, and nothing else is touched; a refused RevokeSessions changes no
stored byte. The SDK's ``logout`` and ``revoke_sessions`` do the same for an app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from client_sdk import Client
from client_sdk.identity import Identity
from client_sdk.protocol.refusals import Reason
from client_sdk.protocol.signing import LOGIN_DOMAIN, REVOKE_SESSIONS_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import Clients, unique
from tests.integration.test_bad_input import dump, expect
from tests.integration.waiting import eventually

Code = grpc.StatusCode


async def refused(connection: DirectoryConnection, handle: str = "alice") -> bool:
    """Whether the connection's token is refused as an ended session."""
    try:
        await connection.lookup(handle)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == Code.UNAUTHENTICATED, exc.details()
        assert "session ended" in (exc.details() or ""), exc.details()
        return True
    return False


async def login_again(connection: DirectoryConnection, identity: Identity, handle: str) -> str:
    await connection.login(identity, handle)
    assert connection.token is not None
    return connection.token


async def test_logout_ends_one_session_and_survives_a_restart(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    node = start_supernode()
    async with (
        DirectoryConnection(node.grpc_target) as first,
        DirectoryConnection(node.grpc_target) as second,
    ):
        alice = await new_user(first, "alice")
        await second.login(alice, "alice")
        kept = second.token
        await first.logout()
        assert first.token is None
        first.token = ended = await login_again(first, alice, "alice")
        await first.logout()
        first.token = ended
        await eventually(lambda: refused(first), 10, "the logged-out token is refused")
        assert (await second.lookup("alice")).account.handle == "alice"
        # Logging out twice: the token is no longer a session, so UNAUTHENTICATED.
        await expect(first.logout(), Code.UNAUTHENTICATED, "session ended", Reason.SESSION_REVOKED)

    assert node.terminate() == 0
    node = start_supernode(data_dir=node.data_dir)
    async with (
        DirectoryConnection(node.grpc_target) as first,
        DirectoryConnection(node.grpc_target) as second,
    ):
        first.token, second.token = ended, kept
        assert await refused(first)  # the revocation is in the store
        assert (await second.lookup("alice")).account.handle == "alice"


async def test_revoke_sessions_ends_every_earlier_session_of_the_account(
    supernode: SupernodeProcess,
) -> None:
    async with (
        DirectoryConnection(supernode.grpc_target) as phone,
        DirectoryConnection(supernode.grpc_target) as laptop,
        DirectoryConnection(supernode.grpc_target) as bob,
        DirectoryConnection(supernode.grpc_target) as anonymous,
    ):
        alice = await new_user(phone, "alice")
        await laptop.login(alice, "alice")
        await new_user(bob, "bob")
        answer = await anonymous.revoke_sessions(alice, "alice")  # no token needed
        assert answer.revoked_before_ms > 0
        await eventually(lambda: refused(phone), 10, "the phone's token is refused")
        await eventually(lambda: refused(laptop), 10, "the laptop's token is refused")
        assert (await bob.lookup("alice")).account.handle == "alice"  # another account's
        await laptop.login(alice, "alice")  # the key still logs in: a new session
        assert (await laptop.lookup("bob")).account.handle == "bob"


async def test_refused_revocations_change_nothing(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        alice = await new_user(conn, "alice")
        kept = conn.token
    assert node.terminate() == 0
    before = dump(data_dir)

    node = start_supernode(data_dir=data_dir)
    thief = Identity.generate()
    async with DirectoryConnection(node.grpc_target) as conn:
        sessions = conn.sessions

        async def revoke(handle: str, identity: Identity, domain: bytes) -> object:
            challenge = (
                await sessions.GetChallenge(pb.GetChallengeRequest(handle=handle))
            ).challenge
            return await sessions.RevokeSessions(
                pb.RevokeSessionsRequest(
                    handle=handle, challenge=challenge, signature=identity.sign(domain, challenge)
                )
            )

        await expect(
            revoke("alice", thief, REVOKE_SESSIONS_DOMAIN),
            Code.PERMISSION_DENIED,
            "",
            Reason.SIGNATURE_INVALID,
        )
        # A login's signature is no revocation's, and the other way round.
        await expect(
            revoke("alice", alice, LOGIN_DOMAIN),
            Code.PERMISSION_DENIED,
            "",
            Reason.SIGNATURE_INVALID,
        )
        await expect(
            sessions.RevokeSessions(pb.RevokeSessionsRequest(handle="nobody-here")),
            Code.NOT_FOUND,
            "",
            Reason.ACCOUNT_NOT_FOUND,
        )
        await expect(
            sessions.RevokeSessions(
                pb.RevokeSessionsRequest(
                    handle="alice", challenge=b"x" * 10, signature=b"s" * 32 + b"\x01" * 32
                )
            ),
            Code.INVALID_ARGUMENT,
            "challenge",
            Reason.INVALID_FIELD,
        )
        await expect(
            sessions.Logout(pb.LogoutRequest()),
            Code.UNAUTHENTICATED,
            "log in first",
            Reason.TOKEN_MISSING,
        )
        # A token of another audience (a challenge dressed as one) is no session.
        await expect(
            sessions.Logout(pb.LogoutRequest(), metadata=(("authorization", "Bearer AAAA"),)),
            Code.UNAUTHENTICATED,
            "",
            Reason.TOKEN_INVALID,
        )
        conn.token = kept
        assert (await conn.lookup("alice")).account.handle == "alice"
    assert node.terminate() == 0
    assert dump(data_dir) == before


async def test_sdk_logout_and_revoke_sessions(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    handle = unique("sdk")
    identity = Identity.generate()
    phone = sdk_clients.open(supernode.grpc_target, handle, identity)
    await phone.create_account("Phone")
    await phone.login()
    token = _token_of(phone)
    await phone.logout()
    async with DirectoryConnection(supernode.grpc_target) as raw:
        raw.token = token
        await eventually(lambda: refused(raw, handle), 10, "the SDK's logged-out token")

    laptop = sdk_clients.open(supernode.grpc_target, handle, identity)
    other = sdk_clients.open(supernode.grpc_target, handle, identity)
    await laptop.lookup(handle)
    laptop_token = _token_of(laptop)
    assert await other.revoke_sessions() > 0
    async with DirectoryConnection(supernode.grpc_target) as raw:
        raw.token = laptop_token
        await eventually(lambda: refused(raw, handle), 10, "the revoked SDK token")
    # The SDK logs in again by itself (it holds the key): the app sees no error.
    assert (await laptop.lookup(handle)).handle == handle
    assert _token_of(laptop) != laptop_token


def _token_of(client: Client) -> str:
    """The token the client holds for its current target (white box, for the test only)."""
    session = client._session
    connection = session._targets[session._current].connection  # opened by its calls
    assert connection is not None and connection.token is not None
    return connection.token
