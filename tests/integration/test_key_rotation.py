"""Key rotation and privacy changes on a real node: what a rotation changes, and every bad
SetPrivacy and RotateKey refused with its status and no stored byte changed."""

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.refusals import Reason
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, now_ms, sign_rotation
from tests.integration.conftest import new_user
from tests.integration.privacy_support import CONTACTS, EVERYONE, privacy_request, set_privacy
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.test_bad_input import dump, expect
from tests.integration.waiting import eventually

Code = grpc.StatusCode


async def login_after_rotation(conn: DirectoryConnection, identity: Identity) -> None:
    """Log in with the new key. A rotation ends the sessions issued up to its millisecond,
    so a login within that same millisecond is ended too: log in again (bounded)."""

    async def logged_in() -> bool:
        await conn.login(identity, "alice")
        try:
            await conn.get_privacy()
        except grpc.aio.AioRpcError as error:
            if error.code() != Code.UNAUTHENTICATED:
                raise
            return False
        return True

    await eventually(logged_in, within=5, what="a session of the new key")


async def test_a_rotation_moves_every_signature_to_the_new_key(
    connect: Callable[[], DirectoryConnection],
) -> None:
    conn, reader, elsewhere = connect(), connect(), connect()
    old = await new_user(conn, "alice")
    await new_user(reader, "reader")
    await elsewhere.login(old, "alice")  # another session opened with the old key
    await conn.register_device(device(old, "alice", "phone", seq=1, ttl=600))
    new = Identity.generate()
    statement = sign_rotation(old, new, "alice", 1)
    chain = await conn.rotate_key(statement)
    assert chain == [statement]
    # Every session opened with the old key ended with it, this one too.
    for ended in (elsewhere, conn):
        await expect(
            ended.lookup("reader"), Code.UNAUTHENTICATED, r"revoked|log in", Reason.SESSION_REVOKED
        )
    await login_after_rotation(conn, new)
    # What a third party needs to follow the change: served with the account.
    record = await reader.get_account_record("alice")
    assert record.account.account_key == old.public_key and list(record.rotations) == chain
    assert list((await reader.lookup("alice")).rotations) == chain
    many = await reader.lookup_many(["alice"])
    assert list(many.results[0].rotations) == chain

    # The old key signs nothing any more: records, settings, logins, rotations.
    await expect(
        conn.register_device(device(old, "alice", "phone", seq=2)),
        Code.PERMISSION_DENIED,
        r"does not verify with the account key",
        Reason.SIGNATURE_INVALID,
    )
    await expect(
        set_privacy(conn, old, "alice", 1, CONTACTS),
        Code.PERMISSION_DENIED,
        r"current key",
        Reason.SIGNATURE_INVALID,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connect().login(old, "alice")
    assert caught.value.code() in (Code.PERMISSION_DENIED, Code.UNAUTHENTICATED)
    assert await conn.rotate_key(statement) == chain  # a retry (lost answer): done already
    await login_after_rotation(conn, new)  # (and it ended the sessions again, ours too)
    await expect(
        conn.rotate_key(sign_rotation(old, Identity.generate(), "alice", 2)),
        Code.FAILED_PRECONDITION,
        r"old_key: not the current key",
        Reason.STALE_SEQ,
    )
    # The new key does.
    await conn.register_device(device(new, "alice", "phone", seq=3))
    await set_privacy(conn, new, "alice", 1, EVERYONE)
    await connect().login(new, "alice")
    newer = Identity.generate()
    assert len(await conn.rotate_key(sign_rotation(new, newer, "alice", 2))) == 2
    await login_after_rotation(conn, newer)
    # Once another rotation followed, the first statement is a replay.
    await expect(
        conn.rotate_key(statement),
        Code.FAILED_PRECONDITION,
        r"seq: 1, but the next",
        Reason.STALE_SEQ,
    )
    settings = privacy_request(newer, "alice", 7, CONTACTS)
    assert await conn.set_privacy(settings) == await conn.set_privacy(settings)  # a retry


async def test_bad_privacy_and_rotation_requests_change_nothing(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        alice = await new_user(conn, "alice")
        await conn.register_device(device(alice, "alice", "phone", seq=1))
        await set_privacy(conn, alice, "alice", 5, CONTACTS, allowed=["bob"])
        token = conn.token
    assert node.terminate() == 0
    before = dump(data_dir)

    node = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        conn.token = token
        await catalogue(conn, alice)
        conn.token = None
        await expect(
            set_privacy(conn, alice, "alice", 9, EVERYONE),
            Code.UNAUTHENTICATED,
            r"log in",
            Reason.TOKEN_MISSING,
        )
    assert node.terminate() == 0
    assert dump(data_dir) == before


async def catalogue(conn: DirectoryConnection, alice: Identity) -> None:
    stranger = Identity.generate()

    def settings(**fields: object) -> pb.SetPrivacyRequest:
        values: dict[str, object] = {"seq": 9, "visibility": EVERYONE}
        values.update(fields)
        return privacy_request(alice, "alice", **values)  # type: ignore[arg-type]

    await expect(
        conn.set_privacy(pb.SetPrivacyRequest(settings=b"\xff\xff", signature=b"x" * 64)),
        Code.INVALID_ARGUMENT,
        r"^settings: not a serialized",
        Reason.INVALID_FIELD,
    )
    forged = settings()
    forged.signature = stranger.sign(b"supernode.v1.PrivacySettings", forged.settings)
    await expect(
        conn.set_privacy(forged),
        Code.PERMISSION_DENIED,
        r"^signature: does not verify",
        Reason.SIGNATURE_INVALID,
    )
    short = settings()
    short.signature = b"short"
    await expect(
        conn.set_privacy(short), Code.INVALID_ARGUMENT, r"^signature:", Reason.INVALID_FIELD
    )
    await expect(
        conn.set_privacy(privacy_request(alice, "bob", 9, EVERYONE)),
        Code.PERMISSION_DENIED,
        r"^settings\.handle: 'bob', but this session belongs to 'alice'",
        Reason.NOT_OWNER,
    )
    await expect(
        conn.set_privacy(settings(seq=5)),
        Code.FAILED_PRECONDITION,
        r"not greater than stored 5",
        Reason.STALE_SEQ,
    )
    await expect(
        conn.set_privacy(settings(seq=0)),
        Code.INVALID_ARGUMENT,
        r"^settings\.seq",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.set_privacy(settings(visibility=9)),
        Code.INVALID_ARGUMENT,
        r"^settings\.visibility",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.set_privacy(settings(allowed=["ok-name", "Not A Handle"])),
        Code.INVALID_ARGUMENT,
        r"^settings\.allowed\[1\]",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.set_privacy(settings(blocked=[f"user{i}" for i in range(1001)])),
        Code.INVALID_ARGUMENT,
        r"^settings\.blocked: 1001 handles, at most 1000",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.set_privacy(settings(issued_at_ms=now_ms() - 3_600_000)),
        Code.INVALID_ARGUMENT,
        r"^settings\.issued_at_ms: .* in the past",
        Reason.CLOCK_SKEW,
    )

    new = Identity.generate()
    await expect(
        conn.rotate_key(pb.SignedKeyRotation(rotation=b"\xff\xff")),
        Code.INVALID_ARGUMENT,
        r"^rotation\.rotation: not a serialized",
        Reason.INVALID_FIELD,
    )
    bad_old = sign_rotation(alice, new, "alice", 1)
    bad_old.signature = stranger.sign(b"supernode.v1.KeyRotation", bad_old.rotation)
    await expect(
        conn.rotate_key(bad_old),
        Code.PERMISSION_DENIED,
        r"^rotation\.signature",
        Reason.SIGNATURE_INVALID,
    )
    no_possession = sign_rotation(alice, new, "alice", 1)
    no_possession.new_key_signature = stranger.sign(
        b"supernode.v1.KeyRotation.NewKey", no_possession.rotation
    )
    await expect(
        conn.rotate_key(no_possession),
        Code.PERMISSION_DENIED,
        r"^rotation\.new_key_signature",
        Reason.SIGNATURE_INVALID,
    )
    await expect(
        conn.rotate_key(sign_rotation(alice, new, "bob", 1)),
        Code.PERMISSION_DENIED,
        r"^rotation\.handle: 'bob'",
        Reason.NOT_OWNER,
    )
    await expect(
        conn.rotate_key(sign_rotation(alice, new, "alice", 2)),
        Code.FAILED_PRECONDITION,
        r"^rotation\.seq: 2, but the next rotation of 'alice' is 1",
        Reason.STALE_SEQ,
    )
    await expect(
        conn.rotate_key(sign_rotation(stranger, new, "alice", 1)),
        Code.FAILED_PRECONDITION,
        r"^rotation\.old_key: not the current key",
        Reason.STALE_SEQ,
    )
    await expect(
        conn.rotate_key(sign_rotation(alice, alice, "alice", 1)),
        Code.INVALID_ARGUMENT,
        r"^rotation\.new_key: the same as old_key",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.rotate_key(sign_rotation(alice, new, "alice", 1, issued_at_ms=1)),
        Code.INVALID_ARGUMENT,
        r"^rotation\.issued_at_ms",
        Reason.CLOCK_SKEW,
    )
    short_key = sign_rotation(alice, new, "alice", 1)
    body = pb.KeyRotation.FromString(short_key.rotation)
    body.new_key = b"\x01" * 31
    short_key.rotation = body.SerializeToString()
    await expect(
        conn.rotate_key(short_key),
        Code.INVALID_ARGUMENT,
        r"^rotation\.new_key",
        Reason.INVALID_FIELD,
    )
