import base64
import hashlib
import hmac
import struct

import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.signing import LOGIN_DOMAIN, REVOKE_SESSIONS_DOMAIN
from supernode.errors import PermissionDenied, Unauthenticated
from supernode.revocations import Revocations, account_revocation, session_revocation
from supernode.sessions import NODE_HANDLE_PREFIX, Audience, SessionAuthority


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authority(clock: Clock) -> SessionAuthority:
    return SessionAuthority(
        b"s" * 32, clock_ms=clock, token_ttl_seconds=60, challenge_ttl_seconds=5
    )


def _login(authority: SessionAuthority, identity: Identity, handle: str = "alice") -> str:
    challenge, _ = authority.challenge(handle)
    return authority.login(
        handle, challenge, identity.sign(LOGIN_DOMAIN, challenge), identity.public_key
    ).token


def test_signed_challenge_gives_a_token_for_the_handle(authority: SessionAuthority) -> None:
    token = _login(authority, Identity.generate())
    assert authority.authenticate(token).handle == "alice"


def test_token_expires(authority: SessionAuthority, clock: Clock) -> None:
    token = _login(authority, Identity.generate())
    authority.authenticate(token)  # cached now
    clock.now += 60_000
    with pytest.raises(Unauthenticated, match="expired"):
        authority.authenticate(token)


def test_forged_and_malformed_tokens_are_refused(authority: SessionAuthority) -> None:
    token = _login(authority, Identity.generate())
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(Unauthenticated, match="not issued"):
        authority.authenticate(tampered)
    for junk in ("", "x", "!!!!", "a" * 200):
        with pytest.raises(Unauthenticated):
            authority.authenticate(junk)


def test_token_from_another_secret_is_refused(authority: SessionAuthority, clock: Clock) -> None:
    other = SessionAuthority(b"o" * 32, clock_ms=clock)
    with pytest.raises(Unauthenticated, match="not issued"):
        authority.authenticate(_login(other, Identity.generate()))


def test_challenge_is_single_use(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    challenge, _ = authority.challenge("alice")
    signature = identity.sign(LOGIN_DOMAIN, challenge)
    authority.login("alice", challenge, signature, identity.public_key)
    with pytest.raises(Unauthenticated, match="already used"):
        authority.login("alice", challenge, signature, identity.public_key)


def test_challenge_expires(authority: SessionAuthority, clock: Clock) -> None:
    identity = Identity.generate()
    challenge, _ = authority.challenge("alice")
    clock.now += 5_000
    with pytest.raises(Unauthenticated, match="expired"):
        authority.login(
            "alice", challenge, identity.sign(LOGIN_DOMAIN, challenge), identity.public_key
        )


def test_challenge_is_bound_to_its_handle(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    challenge, _ = authority.challenge("alice")
    with pytest.raises(Unauthenticated, match="this handle"):
        authority.login(
            "mallory", challenge, identity.sign(LOGIN_DOMAIN, challenge), identity.public_key
        )


def test_wrong_key_signature_is_denied(authority: SessionAuthority) -> None:
    owner, thief = Identity.generate(), Identity.generate()
    challenge, _ = authority.challenge("alice")
    with pytest.raises(PermissionDenied, match="account key"):
        authority.login("alice", challenge, thief.sign(LOGIN_DOMAIN, challenge), owner.public_key)


def test_signature_for_another_purpose_is_denied(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    challenge, _ = authority.challenge("alice")
    wrong_domain = identity.sign(b"supernode.v1.DeviceRecord", challenge)
    with pytest.raises(PermissionDenied):
        authority.login("alice", challenge, wrong_domain, identity.public_key)


def test_malformed_challenge_and_signature(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    with pytest.raises(InvalidField, match="signature"):
        authority.login("alice", b"c" * 57, b"short", identity.public_key)
    with pytest.raises(InvalidField, match="challenge"):
        authority.login("alice", b"c" * 3, b"s" * 32 + b"\x01" * 32, identity.public_key)


def test_short_secret_is_refused(clock: Clock) -> None:
    with pytest.raises(ValueError):
        SessionAuthority(b"short", clock_ms=clock)


def test_an_account_stored_with_a_weak_key_cannot_log_in(authority: SessionAuthority) -> None:
    """Stored before weak keys were refused: the universal signature no longer logs in."""
    identity_point = b"\x01" + bytes(31)
    challenge, _ = authority.challenge("alice")
    universal_r_ok = Identity.generate().sign(LOGIN_DOMAIN, challenge)  # any well-formed one
    with pytest.raises(PermissionDenied, match=r"^handle: the account key of 'alice' is a small"):
        authority.login("alice", challenge, universal_r_ok, identity_point)


# ---------------------------------------------------------------- binding and revocation


def _revoke_all(authority: SessionAuthority, identity: Identity, handle: str = "alice") -> int:
    challenge, _ = authority.challenge(handle)
    signature = identity.sign(REVOKE_SESSIONS_DOMAIN, challenge)
    revocation = authority.revoke_all(handle, challenge, signature, identity.public_key)
    authority.revocations.add(revocation)
    return revocation.cutoff_ms


def test_a_node_token_is_no_session_token_and_back(authority: SessionAuthority) -> None:
    node_token = authority.issue_node_token("n1").token
    assert authority.authenticate(node_token, Audience.NODE).handle == NODE_HANDLE_PREFIX + "n1"
    with pytest.raises(PermissionDenied, match="not a client session token"):
        authority.authenticate(node_token)
    client_token = _login(authority, Identity.generate())
    with pytest.raises(PermissionDenied, match="only nodes"):
        authority.authenticate(client_token, Audience.NODE)


def test_a_challenge_is_never_a_token(authority: SessionAuthority) -> None:
    challenge, _ = authority.challenge("alice")
    as_text = base64.urlsafe_b64encode(challenge).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        authority.authenticate(as_text)


def test_the_audience_and_handle_are_under_the_mac(authority: SessionAuthority) -> None:
    """Flipping the audience byte, or the handle, of a genuine token breaks its MAC."""
    raw = bytearray(base64.urlsafe_b64decode(_login(authority, Identity.generate()) + "=="))
    for index in (1, len(raw) - 33):  # the audience byte; the handle's last byte
        forged = bytearray(raw)
        forged[index] ^= 0x03
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        with pytest.raises(Unauthenticated, match="not issued"):
            authority.authenticate(text)


def test_logout_ends_that_session_only(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    first, second = _login(authority, identity), _login(authority, identity)
    session = authority.authenticate(first)
    authority.revocations.add(authority.logout(session))
    with pytest.raises(Unauthenticated, match="session ended"):
        authority.authenticate(first)
    assert authority.authenticate(second).handle == "alice"


def test_revoke_all_ends_every_earlier_session_of_the_account(
    authority: SessionAuthority, clock: Clock
) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    old = _login(authority, alice)
    bobs = _login(authority, bob, "bob")
    clock.now += 1
    assert _revoke_all(authority, alice) == clock.now
    with pytest.raises(Unauthenticated, match="session ended"):
        authority.authenticate(old)
    assert authority.authenticate(bobs).handle == "bob"
    clock.now += 1
    assert authority.authenticate(_login(authority, alice)).handle == "alice"  # a new login


def test_revoke_all_needs_a_signature_for_that_purpose(authority: SessionAuthority) -> None:
    identity = Identity.generate()
    challenge, _ = authority.challenge("alice")
    login_signature = identity.sign(LOGIN_DOMAIN, challenge)
    with pytest.raises(PermissionDenied):
        authority.revoke_all("alice", challenge, login_signature, identity.public_key)
    thief = Identity.generate()
    challenge, _ = authority.challenge("alice")
    with pytest.raises(PermissionDenied):
        authority.revoke_all(
            "alice", challenge, thief.sign(REVOKE_SESSIONS_DOMAIN, challenge), identity.public_key
        )
    assert len(authority.revocations) == 0


def test_revocations_are_kept_until_their_tokens_expire(clock: Clock) -> None:
    revocations = Revocations()
    revocations.add(session_revocation(b"\x01" * 16, until_ms=clock.now + 10))
    revocations.add(account_revocation("alice", cutoff_ms=clock.now, until_ms=clock.now + 20))
    assert revocations.covers("bob", b"\x01" * 16, 0)
    assert revocations.covers("alice", b"\x02" * 16, clock.now)
    assert not revocations.covers("alice", b"\x02" * 16, clock.now + 1)
    assert revocations.forget_expired(clock.now + 10) == ["s/" + "01" * 16]
    assert revocations.forget_expired(clock.now + 20) == ["a/alice"]
    assert len(revocations) == 0


def test_revocations_round_trip_and_malformed_entries_are_skipped() -> None:
    entries = [
        (r.name, r.value)
        for r in (session_revocation(b"\x07" * 16, 5), account_revocation("alice", 3, 9))
    ]
    loaded = Revocations()
    loaded.replace([*entries, ("s/not-hex", b"\x00" * 8), ("a/bob", b"short"), ("x/y", b"")])
    assert len(loaded) == 2
    assert loaded.covers("zed", b"\x07" * 16, 0) and loaded.covers("alice", b"\x00" * 16, 3)


def test_version_1_tokens_are_accepted_until_they_expire(
    authority: SessionAuthority, clock: Clock
) -> None:
    """Issued before an upgrade (the old layout, MACed with the same secret): a rolling
    upgrade ends no session; the audience follows from the handle, revocation works."""

    def v1(handle: str, session_id: bytes) -> str:
        payload = struct.pack(">BQ8s", 1, clock.now + 60_000, session_id) + handle.encode()
        mac = hmac.new(b"s" * 32, b"token\x00" + payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()

    client, node = v1("alice", b"\x01" * 8), v1(NODE_HANDLE_PREFIX + "n1", b"\x02" * 8)
    assert authority.authenticate(client).handle == "alice"
    assert authority.authenticate(node, Audience.NODE).handle == NODE_HANDLE_PREFIX + "n1"
    with pytest.raises(PermissionDenied):
        authority.authenticate(node)
    authority.revocations.add(authority.logout(authority.authenticate(client)))
    with pytest.raises(Unauthenticated, match="session ended"):
        authority.authenticate(client)
    clock.now += 60_000
    with pytest.raises(Unauthenticated, match="expired"):
        authority.authenticate(node, Audience.NODE)


def test_a_challenge_is_redeemed_only_by_the_process_that_issued_it(clock: Clock) -> None:
    """Another node of the cluster (the same secret) or this one restarted cannot tell
    whether a challenge was used already: they refuse it, so no captured challenge and
    signature log in twice."""
    secret = b"s" * 32
    issuer, other_node = (SessionAuthority(secret, clock_ms=clock) for _ in range(2))
    identity = Identity.generate()
    challenge, _ = issuer.challenge("alice")
    signature = identity.sign(LOGIN_DOMAIN, challenge)
    with pytest.raises(Unauthenticated, match="not issued by this supernode") as refused:
        other_node.login("alice", challenge, signature, identity.public_key)
    assert refused.value.reason.value == "CHALLENGE_INVALID"
    issuer.login("alice", challenge, signature, identity.public_key)
    with pytest.raises(Unauthenticated, match="already used"):
        issuer.login("alice", challenge, signature, identity.public_key)
