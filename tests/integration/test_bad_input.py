"""Acceptance 5: every bad input gets its status and message, and the store is unchanged.

The store is dumped (every column family) with the node stopped, the node is restarted on
the same data, every bad request is sent, the node is stopped again and the store dumped
again: the two dumps must be equal.
"""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.rpc.error_details_pb2 import ErrorInfo
from google.rpc.status_pb2 import Status

from client_sdk.identity import Identity
from client_sdk.protocol import wire
from client_sdk.protocol.refusals import (
    ERROR_DOMAIN,
    STATUS_DETAILS_KEY,
    FieldViolation,
    Reason,
    error_reason,
    field_violations,
)
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN, DEVICE_RECORD_DOMAIN, LOGIN_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2 as rendezvous_pb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rendezvous_rpc
from client_sdk.protocol.validation import ED25519_ORDER
from client_sdk.transport import DirectoryConnection, now_ms, sign_account, sign_device_record
from supernode.store import Store
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.waiting import eventually

Code = grpc.StatusCode


async def expect(
    call: Awaitable[object], code: grpc.StatusCode, pattern: str, reason: Reason | None
) -> None:
    """The call fails with ``code``, a message matching ``pattern`` and the rich error
    details of ``supernode.v1`` (``protos/supernode/v1/errors.proto``): the ``ErrorInfo``
    ``reason`` (None: gRPC's own refusal, which has none), and for INVALID_ARGUMENT the
    ``BadRequest`` violation of the field the message names."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    details = error.details() or ""
    assert error.code() == code, details
    assert re.search(pattern, details), details
    assert error_reason(error.trailing_metadata()) == (reason or ""), details
    if reason is not None:
        raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
        status = Status.FromString(raw)  # type: ignore[arg-type]
        assert status.code == code.value[0] and status.message == details
        info = ErrorInfo()
        assert status.details[0].Unpack(info) and info.domain == ERROR_DOMAIN
    violations = field_violations(error.trailing_metadata())
    if code == Code.INVALID_ARGUMENT:
        field, _, why = details.partition(": ")
        assert violations == [FieldViolation(field, why)], details
    else:
        assert violations == [], details


def dump(data_dir: Path) -> dict[str, dict[bytes, bytes]]:
    store = Store(data_dir, block_cache_bytes=1 << 20)
    try:
        return store.dump()
    finally:
        store.close()


async def test_bad_inputs_are_refused_and_change_nothing(
    start_supernode: Callable[..., SupernodeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = start_supernode(data_dir=data_dir)
    async with (
        DirectoryConnection(node.grpc_target) as alice_conn,
        DirectoryConnection(node.grpc_target) as bob_conn,
    ):
        alice = await new_user(alice_conn, "alice")
        bob = await new_user(bob_conn, "bob")
        await alice_conn.register_device(device(alice, "alice", "phone", seq=5))
        await bob_conn.register_device(device(bob, "bob", "tablet", seq=1))
        alice_token = alice_conn.token
    assert node.terminate() == 0
    before = dump(data_dir)

    node = start_supernode(data_dir=data_dir)
    async with DirectoryConnection(node.grpc_target) as conn:
        conn.token = alice_token  # tokens survive a restart: the secret is in the store
        await catalogue(conn, alice, bob)
    assert node.terminate() == 0
    assert dump(data_dir) == before


async def catalogue(conn: DirectoryConnection, alice: Identity, bob: Identity) -> None:
    # --- malformed handles and requests
    await expect(
        conn.lookup("Not A Handle"),
        Code.INVALID_ARGUMENT,
        r"^handle: .*not a handle",
        Reason.INVALID_FIELD,
    )
    await expect(conn.lookup("ab"), Code.INVALID_ARGUMENT, r"^handle:", Reason.INVALID_FIELD)
    await expect(
        conn.get_account(""), Code.INVALID_ARGUMENT, r"^handle: required", Reason.INVALID_FIELD
    )
    await expect(
        conn.lookup_many(["alice", "BAD!"]),
        Code.INVALID_ARGUMENT,
        r"^handles\[1\]:",
        Reason.INVALID_FIELD,
    )
    # A repeated handle is answered once, and an error names where it was first asked.
    await expect(
        conn.lookup_many(["alice", "alice", "BAD!", "bob", "BAD!"]),
        Code.INVALID_ARGUMENT,
        r"^handles\[2\]:",
        Reason.INVALID_FIELD,
    )
    one = await conn.lookup_many(["alice"])
    repeated = await conn.lookup_many(["alice"] * 995 + ["nobody-here"] * 3 + ["bob", "alice"])
    assert [r.account.handle for r in repeated.results] == ["alice", "bob"]
    assert list(repeated.not_found) == ["nobody-here"]
    assert repeated.results[0] == one.results[0]
    assert repeated.ByteSize() < 2 * one.ByteSize() + 1024  # not 1,000 copies
    for unknown in (
        conn.presence.Lookup(
            pb.LookupRequest(handle="alice", consistency=99),  # type: ignore[arg-type]
            metadata=conn.metadata,
        ),
        conn.presence.LookupMany(
            pb.LookupManyRequest(handles=["alice"], consistency=7),  # type: ignore[arg-type]
            metadata=conn.metadata,
        ),
    ):
        await expect(
            unknown,
            Code.INVALID_ARGUMENT,
            r"^consistency: \d+ is not a known",
            Reason.INVALID_FIELD,
        )
    raw_lookup = conn.channel.unary_unary("/supernode.v1.PresenceService/Lookup")
    await expect(
        raw_lookup(b"\xff\xff\xff\xff", metadata=conn.metadata),
        Code.INVALID_ARGUMENT,
        r"request: not a serialized supernode\.v1\.LookupRequest",
        Reason.MALFORMED_REQUEST,
    )
    await expect(
        conn.presence.RegisterDevice(pb.RegisterDeviceRequest(), metadata=conn.metadata),
        Code.INVALID_ARGUMENT,
        r"^record\.handle: required",
        Reason.INVALID_FIELD,
    )

    # --- oversized fields and messages
    await expect(
        conn.lookup("a" * 70_000), Code.RESOURCE_EXHAUSTED, r"(?i)larger than max|too large", None
    )
    await expect(
        conn.lookup_many(["alice"] * 1001),
        Code.RESOURCE_EXHAUSTED,
        r"handles: 1001 given, at most 1000",
        Reason.REQUEST_TOO_LARGE,
    )
    await expect(
        conn.create_account(Identity.generate(), "longname", "x" * 65),
        Code.INVALID_ARGUMENT,
        r"account\.display_name: 65 characters",
        Reason.INVALID_FIELD,
    )
    endpoints = [pb.Endpoint(address="198.18.0.1", port=1, protocol=1, type=1)] * 17
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=6, endpoints=endpoints)),
        Code.INVALID_ARGUMENT,
        r"record\.endpoints: 17 given, at most 16",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.register_device(device(alice, "alice", "p" * 65, seq=6)),
        Code.INVALID_ARGUMENT,
        r"record\.device_id",
        Reason.INVALID_FIELD,
    )

    # --- signatures and keys
    good = device(alice, "alice", "phone", seq=6)
    flipped = pb.SignedDeviceRecord(
        record=good.record, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:]
    )
    await expect(
        conn.register_device(flipped),
        Code.PERMISSION_DENIED,
        r"signed\.signature: does not verify",
        Reason.SIGNATURE_INVALID,
    )
    unsigned = pb.SignedDeviceRecord(record=good.record)
    await expect(
        conn.register_device(unsigned),
        Code.INVALID_ARGUMENT,
        r"signed\.signature: 0 bytes",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.register_device(device(bob, "alice", "phone", seq=6)),
        Code.PERMISSION_DENIED,
        r"account key of 'alice'",
        Reason.SIGNATURE_INVALID,
    )
    await expect(
        conn.register_device(device(bob, "bob", "tablet", seq=9)),
        Code.PERMISSION_DENIED,
        r"record\.handle: 'bob', but this session belongs to 'alice'",
        Reason.NOT_OWNER,
    )
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=6, transport_key=b"short")),
        Code.INVALID_ARGUMENT,
        r"record\.transport_key: 5 bytes",
        Reason.INVALID_FIELD,
    )

    # --- replays and clocks
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=5)),
        Code.FAILED_PRECONDITION,
        r"record\.seq: 5 is not greater than the stored 5",
        Reason.STALE_SEQ,
    )
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=2)),
        Code.FAILED_PRECONDITION,
        r"record\.seq: 2",
        Reason.STALE_SEQ,
    )
    # --- keepalives: only the live record at its own seq, only the caller's own device
    await expect(
        conn.keep_alive("phone", 4),  # an older record's keepalive, replayed
        Code.FAILED_PRECONDITION,
        r"^seq: 4, but the device's current record has seq 5",
        Reason.STALE_SEQ,
    )
    await expect(
        conn.keep_alive("laptop", 1),
        Code.FAILED_PRECONDITION,
        r"^device_id: no such device",
        Reason.DEVICE_NOT_REGISTERED,
    )
    await expect(  # Bob's device: Alice's session names her own handle's devices only
        conn.keep_alive("tablet", 1),
        Code.FAILED_PRECONDITION,
        r"^device_id: no such device",
        Reason.DEVICE_NOT_REGISTERED,
    )
    await expect(
        conn.keep_alive("no such id!", 5),
        Code.INVALID_ARGUMENT,
        r"^device_id:",
        Reason.INVALID_FIELD,
    )
    for offset, word in ((-3_600_000, "past"), (3_600_000, "future")):
        await expect(
            conn.register_device(
                device(alice, "alice", "phone", seq=7, issued_at_ms=now_ms() + offset)
            ),
            Code.INVALID_ARGUMENT,
            rf"record\.issued_at_ms: \d+ s in the {word}",
            Reason.CLOCK_SKEW,
        )

    # --- tokens
    token = conn.token
    conn.token = None
    await expect(
        conn.lookup("alice"), Code.UNAUTHENTICATED, r"missing bearer token", Reason.TOKEN_MISSING
    )
    await expect(
        conn.register_device(good),
        Code.UNAUTHENTICATED,
        r"missing bearer token",
        Reason.TOKEN_MISSING,
    )
    assert token is not None
    conn.token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await expect(
        conn.lookup("alice"),
        Code.UNAUTHENTICATED,
        r"not issued by this supernode",
        Reason.TOKEN_INVALID,
    )
    conn.token = "garbage!"
    await expect(
        conn.unregister_device("phone"), Code.UNAUTHENTICATED, r"malformed", Reason.TOKEN_INVALID
    )
    await expect(
        conn.keep_alive("phone", 5), Code.UNAUTHENTICATED, r"malformed", Reason.TOKEN_INVALID
    )
    await expect(
        conn.presence.Lookup(
            pb.LookupRequest(handle="alice"), metadata=(("authorization", "Basic x"),)
        ),
        Code.UNAUTHENTICATED,
        r"expected 'Bearer <token>'",
        Reason.TOKEN_MISSING,
    )
    conn.token = token

    # --- unknown handles and duplicates
    await expect(
        conn.lookup("nobody"), Code.NOT_FOUND, r"no account 'nobody'", Reason.ACCOUNT_NOT_FOUND
    )
    await expect(
        conn.get_account("nobody"), Code.NOT_FOUND, r"no account 'nobody'", Reason.ACCOUNT_NOT_FOUND
    )
    await expect(
        conn.sessions.GetChallenge(pb.GetChallengeRequest(handle="nobody")),
        Code.NOT_FOUND,
        r"nobody",
        Reason.ACCOUNT_NOT_FOUND,
    )
    await expect(
        conn.create_account(Identity.generate(), "alice"),
        Code.ALREADY_EXISTS,
        r"'alice' is taken",
        Reason.HANDLE_TAKEN,
    )

    # --- account creation and login without proof of the key
    request = sign_account(Identity.generate(), "mallory")
    forged = pb.CreateAccountRequest(
        account=request.account,
        signature=Identity.generate().sign(CREATE_ACCOUNT_DOMAIN, request.account),
    )
    await expect(
        conn.accounts.CreateAccount(forged),
        Code.PERMISSION_DENIED,
        r"signature: does not verify",
        Reason.SIGNATURE_INVALID,
    )
    stale = pb.Account.FromString(request.account)
    stale.created_at_ms -= 86_400_000
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=stale.SerializeToString(), signature=request.signature)
        ),
        Code.INVALID_ARGUMENT,
        r"account\.created_at_ms: \d+ s in the past",
        Reason.CLOCK_SKEW,
    )
    challenge = await conn.sessions.GetChallenge(pb.GetChallengeRequest(handle="alice"))
    await expect(
        conn.sessions.Login(
            pb.LoginRequest(
                handle="alice",
                challenge=challenge.challenge,
                signature=bob.sign(LOGIN_DOMAIN, challenge.challenge),
            )
        ),
        Code.PERMISSION_DENIED,
        r"account key of 'alice'",
        Reason.SIGNATURE_INVALID,
    )
    await expect(
        conn.sessions.Login(
            pb.LoginRequest(handle="alice", challenge=b"x" * 57, signature=b"s" * 32 + b"\x01" * 32)
        ),
        Code.UNAUTHENTICATED,
        r"challenge: not issued",
        Reason.CHALLENGE_INVALID,
    )
    await expect(
        conn.register_device(sign_device_record(alice, pb.DeviceRecord())),
        Code.INVALID_ARGUMENT,
        r"record\.handle: required",
        Reason.INVALID_FIELD,
    )
    await weak_keys_and_exact_bodies(conn, alice)
    rendezvous = rendezvous_rpc.RendezvousServiceStub(conn.channel)  # type: ignore[no-untyped-call]
    await expect(
        rendezvous.Answer(
            rendezvous_pb.AnswerRequest(offer_id="0" * 24, reject=True, reason="r" * 201),
            metadata=conn.metadata,
        ),
        Code.INVALID_ARGUMENT,
        r"^reason: 201 characters, at most 200",
        Reason.INVALID_FIELD,
    )
    await streams_search_and_rendezvous(conn, rendezvous)


async def first_of(stream: AsyncIterator[object]) -> object:
    """A stream's first message: a refused stream fails here, with its status."""
    return await anext(aiter(stream))


async def streams_search_and_rendezvous(
    conn: DirectoryConnection, rendezvous: rendezvous_rpc.RendezvousServiceStub
) -> None:
    """Refusals on every service, streams among them, carry their reason too."""
    await expect(conn.search("a"), Code.INVALID_ARGUMENT, r"^query: ", Reason.INVALID_FIELD)
    await expect(
        first_of(conn.watch([])),
        Code.INVALID_ARGUMENT,
        r"^handles: at least one",
        Reason.INVALID_FIELD,
    )
    await expect(
        first_of(conn.watch(["alice", "BAD!"])),
        Code.INVALID_ARGUMENT,
        r"^handles\[1\]: ",
        Reason.INVALID_FIELD,
    )
    listen = rendezvous.Listen(
        rendezvous_pb.ListenRequest(device_id="no-such-device"), metadata=conn.metadata
    )
    await expect(
        first_of(listen),
        Code.FAILED_PRECONDITION,
        r"^device_id: .*register it first",
        Reason.DEVICE_NOT_REGISTERED,
    )
    offer = rendezvous_pb.ConnectRequest(
        handle="bob", device_id="tablet", from_device_id="phone", payload=b"offer"
    )
    await expect(
        rendezvous.Connect(offer, metadata=conn.metadata),
        Code.FAILED_PRECONDITION,
        r"is not listening",
        Reason.PEER_NOT_LISTENING,
    )
    await expect(
        rendezvous.Answer(
            rendezvous_pb.AnswerRequest(offer_id="0" * 24, reject=True), metadata=conn.metadata
        ),
        Code.NOT_FOUND,
        r"^offer_id: .* is not pending",
        Reason.OFFER_NOT_FOUND,
    )
    relay = rendezvous_rpc.RelayServiceStub(conn.channel)  # type: ignore[no-untyped-call]
    datagram_first = relay.Relay(
        iter([rendezvous_pb.RelayFrame(datagram=b"x")]), metadata=conn.metadata
    )
    await expect(
        first_of(datagram_first),
        Code.INVALID_ARGUMENT,
        r"^join: the first frame must be a RelayJoin",
        Reason.INVALID_FIELD,
    )
    forged = rendezvous_pb.RelayJoin(ticket=b"t" * 64, device_id="phone")
    forged_join = relay.Relay(iter([rendezvous_pb.RelayFrame(join=forged)]), metadata=conn.metadata)
    await expect(
        first_of(forged_join),
        Code.PERMISSION_DENIED,
        r"^join\.ticket: not issued by this supernode",
        Reason.TICKET_INVALID,
    )


IDENTITY_POINT = b"\x01" + bytes(31)
UNIVERSAL_SIGNATURE = IDENTITY_POINT + bytes(32)  # R = identity, S = 0: "verifies" anything


def unknown_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field the contract does not name (field number below 16)."""
    return wire.field(number, payload)


async def weak_keys_and_exact_bodies(conn: DirectoryConnection, alice: Identity) -> None:
    """Issue 16: weak keys, malleable signatures, unknown fields, non-canonical bodies."""
    weak = pb.Account(
        handle="weakling", account_key=IDENTITY_POINT, created_at_ms=now_ms()
    ).SerializeToString()
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=weak, signature=UNIVERSAL_SIGNATURE)
        ),
        Code.INVALID_ARGUMENT,
        r"^account\.account_key: a small-order point",
        Reason.INVALID_FIELD,
    )
    order8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa")
    weak8 = pb.Account(handle="weakling", account_key=order8, created_at_ms=now_ms())
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=weak8.SerializeToString(), signature=bytes(64))
        ),
        Code.INVALID_ARGUMENT,
        r"^account\.account_key: a small-order point",
        Reason.INVALID_FIELD,
    )
    non_canonical = (2**255 - 19 + 5).to_bytes(32, "little")  # y = p + 5 names y = 5
    other = pb.Account(handle="weakling", account_key=non_canonical, created_at_ms=now_ms())
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=other.SerializeToString(), signature=bytes(64))
        ),
        Code.INVALID_ARGUMENT,
        r"^account\.account_key: a non-canonical point encoding",
        Reason.INVALID_FIELD,
    )
    mallory = Identity.generate()
    request = sign_account(mallory, "mallory")
    r, s = request.signature[:32], int.from_bytes(request.signature[32:], "little")
    malleated = r + (s + ED25519_ORDER).to_bytes(32, "little")
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=request.account, signature=malleated)
        ),
        Code.INVALID_ARGUMENT,
        r"^signature: S is not below the group order",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(account=request.account, signature=UNIVERSAL_SIGNATURE)
        ),
        Code.INVALID_ARGUMENT,
        r"^signature: R is a small-order point",
        Reason.INVALID_FIELD,
    )
    challenge = await conn.sessions.GetChallenge(pb.GetChallengeRequest(handle="alice"))
    await expect(
        conn.sessions.Login(
            pb.LoginRequest(
                handle="alice", challenge=challenge.challenge, signature=UNIVERSAL_SIGNATURE
            )
        ),
        Code.INVALID_ARGUMENT,
        r"^signature: R is a small-order point",
        Reason.INVALID_FIELD,
    )
    # A 60 KB unknown field once made GetAccount serve 60,068 B.
    padded = request.account + unknown_field(15, b"x" * 60_000)
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(
                account=padded, signature=mallory.sign(CREATE_ACCOUNT_DOMAIN, padded)
            )
        ),
        Code.INVALID_ARGUMENT,
        r"^account: field 15: not a field of the contract",
        Reason.INVALID_FIELD,
    )
    shuffled = pb.Account.FromString(request.account)
    reordered = (
        pb.Account(account_key=shuffled.account_key).SerializeToString()
        + pb.Account(
            handle=shuffled.handle, created_at_ms=shuffled.created_at_ms
        ).SerializeToString()
    )
    await expect(
        conn.accounts.CreateAccount(
            pb.CreateAccountRequest(
                account=reordered, signature=mallory.sign(CREATE_ACCOUNT_DOMAIN, reordered)
            )
        ),
        Code.INVALID_ARGUMENT,
        r"^account: not the canonical encoding",
        Reason.INVALID_FIELD,
    )
    good = device(alice, "alice", "phone", seq=8)
    body = good.record + unknown_field(12, b"y" * 20_000)
    await expect(
        conn.register_device(
            pb.SignedDeviceRecord(record=body, signature=alice.sign(DEVICE_RECORD_DOMAIN, body))
        ),
        Code.INVALID_ARGUMENT,
        r"^signed\.record: field 12: not a field of the contract",
        Reason.INVALID_FIELD,
    )
    doubled = good.record + wire.field(1, b"alice")  # handle twice: one meaning, two encodings
    await expect(
        conn.register_device(
            pb.SignedDeviceRecord(
                record=doubled, signature=alice.sign(DEVICE_RECORD_DOMAIN, doubled)
            )
        ),
        Code.INVALID_ARGUMENT,
        r"^signed\.record: not the canonical encoding",
        Reason.INVALID_FIELD,
    )
    scoped = pb.Endpoint(address="fe80::1%" + "x" * 300, port=1, protocol=1, type=1)
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=8, endpoints=[scoped])),
        Code.INVALID_ARGUMENT,
        r"^record\.endpoints\[0\]\.address: .* zone index",
        Reason.INVALID_FIELD,
    )
    # The unsigned wrapper is stored as sent (inside Device): nothing may ride in it either.
    wrapper = good.SerializeToString() + unknown_field(9, b"z" * 30_000)
    await expect(
        conn.presence.RegisterDevice(
            pb.RegisterDeviceRequest(signed=pb.SignedDeviceRecord.FromString(wrapper)),
            metadata=conn.metadata,
        ),
        Code.INVALID_ARGUMENT,
        r"^signed: field 9: not a field of supernode\.v1\.SignedDeviceRecord",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.register_device(device(alice, "alice", "phone", seq=8, transport_key=bytes(32))),
        Code.INVALID_ARGUMENT,
        r"^record\.transport_key: a small-order point",
        Reason.INVALID_FIELD,
    )
    await expect(
        conn.register_device(
            pb.SignedDeviceRecord(record=good.record, signature=UNIVERSAL_SIGNATURE)
        ),
        Code.INVALID_ARGUMENT,
        r"^signed\.signature: R is a small-order point",
        Reason.INVALID_FIELD,
    )


async def test_expired_token_is_refused(start_supernode: Callable[..., SupernodeProcess]) -> None:
    node = start_supernode("--token-ttl-seconds", "1")
    async with DirectoryConnection(node.grpc_target) as conn:
        await new_user(conn, "alice")
        await conn.lookup("alice")

        async def refused() -> bool:
            try:
                await conn.lookup("alice")
            except grpc.aio.AioRpcError as error:
                assert error.code() == Code.UNAUTHENTICATED
                assert "expired" in (error.details() or "")
                assert error_reason(error.trailing_metadata()) == Reason.TOKEN_EXPIRED
                return True
            return False

        await eventually(refused)


async def test_get_placement_needs_a_session_and_a_node_alone_has_no_ring(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode()
    async with DirectoryConnection(node.grpc_target) as conn:
        await expect(
            conn.get_placement(),
            Code.UNAUTHENTICATED,
            r"missing bearer token",
            Reason.TOKEN_MISSING,
        )
        conn.token = "garbage!"
        await expect(conn.get_placement(), Code.UNAUTHENTICATED, r"malformed", Reason.TOKEN_INVALID)
        conn.token = None
        await new_user(conn, "placer")
        answer = await conn.get_placement()
        assert answer == pb.GetPlacementResponse()  # epoch 0: the plain path
        raw = conn.channel.unary_unary("/supernode.v1.PresenceService/GetPlacement")
        await expect(
            raw(b"\xff\xff", metadata=conn.metadata),
            Code.INVALID_ARGUMENT,
            r"not a serialized",
            Reason.MALFORMED_REQUEST,
        )
