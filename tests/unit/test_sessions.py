import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.signing import LOGIN_DOMAIN
from supernode.errors import PermissionDenied, Unauthenticated
from supernode.sessions import SessionAuthority


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
