"""Weak and non-canonical Ed25519 keys and signatures are refused (issue 16).

OpenSSL verified the "universal" signature (R = identity, S = 0) under the identity key for
every message, so an account created with that key could be logged into by anyone. The
small-order encodings below are libsodium's blocklist (``ge25519_has_small_order``), each
with and without the sign bit; the non-canonical ones have y at or above p = 2^255 - 19.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.signing import LOGIN_DOMAIN, signature_is_valid
from client_sdk.protocol.validation import (
    ED25519_ORDER,
    check_key,
    check_signature,
    key_defect,
    signature_defect,
)

P = 2**255 - 19
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p: order 4
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1: identity
]


def with_sign_bit(encoding: bytes) -> bytes:
    return encoding[:31] + bytes([encoding[31] | 0x80])


WEAK_KEYS = [bytes.fromhex(h) for h in SMALL_ORDER] + [
    with_sign_bit(bytes.fromhex(h)) for h in SMALL_ORDER
]
# y in [p, 2^255): the other name of the point with y - p (both sign bits).
NON_CANONICAL = [(P + k).to_bytes(32, "little") for k in range(2, 19)]
NON_CANONICAL += [with_sign_bit(key) for key in NON_CANONICAL]


@pytest.mark.parametrize("key", WEAK_KEYS, ids=lambda k: k.hex()[:8] + k.hex()[-2:])
def test_every_small_order_key_is_refused(key: bytes) -> None:
    assert key_defect(key) is not None and "small-order" in (key_defect(key) or "")
    with pytest.raises(InvalidField, match=r"^account\.account_key: a small-order point"):
        check_key("account.account_key", key)
    universal = bytes.fromhex(SMALL_ORDER[0]) + bytes(32)  # R = identity, S = 0
    for message in (b"", b"any challenge", b"\x00" * 57):
        assert not signature_is_valid(key, LOGIN_DOMAIN, message, universal)
        assert not signature_is_valid(key, LOGIN_DOMAIN, message, key + bytes(32))


@pytest.mark.parametrize("key", NON_CANONICAL, ids=lambda k: k.hex()[:4] + k.hex()[-2:])
def test_non_canonical_keys_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidField, match=r"^record\.transport_key: a non-canonical point"):
        check_key("record.transport_key", key)


@pytest.mark.parametrize("r", WEAK_KEYS + NON_CANONICAL, ids=lambda k: k.hex()[:4] + k.hex()[-2:])
def test_signatures_with_a_weak_or_non_canonical_r_are_refused(r: bytes) -> None:
    with pytest.raises(InvalidField, match=r"^signature: R is a (small-order|non-canonical)"):
        check_signature("signature", r + bytes(32))
    identity = Identity.generate()
    assert not signature_is_valid(identity.public_key, LOGIN_DOMAIN, b"m", r + bytes(32))


def test_lengths_are_named() -> None:
    with pytest.raises(InvalidField, match=r"^k: 31 bytes, an Ed25519 public key is 32"):
        check_key("k", b"k" * 31)
    with pytest.raises(InvalidField, match=r"^s: 63 bytes, an Ed25519 signature is 64"):
        check_signature("s", b"s" * 63)


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=2**256 - 1))
def test_encoding_rules_are_range_checks(encoding: bytes, s: int) -> None:
    """Whatever the bytes, the checks answer (never raise) and agree with the rules."""
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
    defect = key_defect(encoding)
    if y >= P and y - P > 1:
        assert defect is not None and "non-canonical" in defect
    if defect is None:
        assert y < P
    signature = encoding + s.to_bytes(32, "little")
    refused = signature_defect(signature)
    if s >= ED25519_ORDER:
        assert refused is not None
    elif defect is None:
        assert refused is None


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=2**256 - 1 - 2**253))
def test_real_signatures_pass_and_their_malleated_twins_do_not(body: bytes, k: int) -> None:
    """S + k*L verifies the same equation; only the canonical S (below L) is accepted."""
    identity = Identity.generate()
    assert key_defect(identity.public_key) is None
    signature = identity.sign(LOGIN_DOMAIN, body)
    assert signature_defect(signature) is None
    assert signature_is_valid(identity.public_key, LOGIN_DOMAIN, body, signature)
    s = int.from_bytes(signature[32:], "little")
    malleated = s + (k % 16 + 1) * ED25519_ORDER
    if malleated < 2**256:
        twin = signature[:32] + malleated.to_bytes(32, "little")
        assert signature_defect(twin) is not None
        assert not signature_is_valid(identity.public_key, LOGIN_DOMAIN, body, twin)
