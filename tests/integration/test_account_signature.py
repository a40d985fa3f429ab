"""A third party verifies an account itself: wherever a supernode serves an Account
(CreateAccount, GetAccount without a session, Lookup, LookupMany, Search, a Watch
snapshot) the creator's CreateAccount signature comes with it and verifies with the
account's own key over the account's bytes, so trust on first use is not the only check.
The signature is stored: it is still served after a restart."""

from __future__ import annotations

from collections.abc import Callable

from client_sdk.identity import Identity
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, sign_account
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess


def binds(account: pb.Account, signature: bytes) -> bool:
    """What any third party checks: the signature over the account as served."""
    body = account.SerializeToString()
    return signature_is_valid(account.account_key, CREATE_ACCOUNT_DOMAIN, body, signature)


async def test_every_served_account_carries_its_creation_signature(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode()
    alice = Identity.generate()
    request = sign_account(alice, "alice.smith", "Alice Smith")
    async with DirectoryConnection(node.grpc_target) as conn:
        created = await conn.accounts.CreateAccount(request)
        assert created.account_signature == request.signature
        assert created.account.SerializeToString() == request.account
        await new_user(conn, "reader")
        answers = await served(conn)
    for account, signature in answers:
        assert account.handle == "alice.smith" and signature == request.signature
        assert binds(account, signature)
    assert node.terminate() == 0

    node = start_supernode(data_dir=node.data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        again = await conn.accounts.GetAccount(pb.GetAccountRequest(handle="alice.smith"))
    assert again.account_signature == request.signature


async def served(conn: DirectoryConnection) -> list[tuple[pb.Account, bytes]]:
    """Alice's account with its signature from every call that serves one."""
    anonymous = DirectoryConnection(conn.target)
    try:  # GetAccount needs no session
        got = await anonymous.accounts.GetAccount(pb.GetAccountRequest(handle="alice.smith"))
    finally:
        await anonymous.close()
    looked = await conn.lookup("alice.smith")
    many = (await conn.lookup_many(["alice.smith"])).results[0]
    found = await conn.search("alice")
    watch = conn.watch(["alice.smith"])
    first = await watch.read()
    watch.cancel()
    assert isinstance(first, pb.WatchEvent)
    snapshot = first.snapshot.handles[0]
    return [
        (got.account, got.account_signature),
        (looked.account, looked.account_signature),
        (many.account, many.account_signature),
        (found.accounts[0], found.account_signatures[0]),
        (snapshot.account, snapshot.account_signature),
    ]
