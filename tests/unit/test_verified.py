"""The SDK's memory of verified signatures: only what verified, only the exact bytes."""

import pytest

from client_sdk import verified
from client_sdk.identity import Identity
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN

BODY = b"a device record body"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each real verification's body, in order."""
    seen: list[bytes] = []
    real = verified.signature_is_valid

    def counting(key: bytes, domain: bytes, body: bytes, signature: bytes) -> bool:
        seen.append(body)
        return real(key, domain, body, signature)

    monkeypatch.setattr(verified, "signature_is_valid", counting)
    monkeypatch.setattr(verified, "_valid", type(verified._valid)())
    return seen


def signed(identity: Identity, body: bytes) -> bytes:
    return identity.sign(DEVICE_RECORD_DOMAIN, body)


def test_a_signature_that_verified_is_not_verified_again(counted: list[bytes]) -> None:
    identity = Identity.generate()
    signature = signed(identity, BODY)
    for _ in range(3):
        assert verified.verifies(identity.public_key, DEVICE_RECORD_DOMAIN, BODY, signature)
    assert counted == [BODY]


def test_a_signature_that_failed_is_checked_every_time(counted: list[bytes]) -> None:
    identity = Identity.generate()
    bad = bytes(64)
    for _ in range(2):
        assert not verified.verifies(identity.public_key, DEVICE_RECORD_DOMAIN, BODY, bad)
    assert counted == [BODY, BODY]


def test_any_byte_changed_misses_the_memory(counted: list[bytes]) -> None:
    identity, other = Identity.generate(), Identity.generate()
    signature = signed(identity, BODY)
    assert verified.verifies(identity.public_key, DEVICE_RECORD_DOMAIN, BODY, signature)
    assert not verified.verifies(identity.public_key, DEVICE_RECORD_DOMAIN, BODY + b"!", signature)
    assert not verified.verifies(other.public_key, DEVICE_RECORD_DOMAIN, BODY, signature)
    assert not verified.verifies(identity.public_key, b"another.domain", BODY, signature)
    tampered = signature[:-1] + bytes([signature[-1] ^ 1])
    assert not verified.verifies(identity.public_key, DEVICE_RECORD_DOMAIN, BODY, tampered)
    assert len(counted) == 5


def test_the_memory_is_bounded(counted: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verified, "_CAPACITY", 2)
    identity = Identity.generate()
    bodies = [b"one", b"two", b"three"]
    for body in bodies:
        assert verified.verifies(
            identity.public_key, DEVICE_RECORD_DOMAIN, body, signed(identity, body)
        )
    assert len(verified._valid) == 2
    # The oldest was forgotten: verifying it again costs a real verification.
    assert verified.verifies(
        identity.public_key, DEVICE_RECORD_DOMAIN, b"one", signed(identity, b"one")
    )
    assert counted == [*bodies, b"one"]
