"""Field rules for every handle, device id, display name, key and signature on the wire.

Each check raises :class:`InvalidField` with the field name first, so a client can tell which
of its inputs was refused and why. They are part of the contract, beside the generated code,
so that every implementation of either side reads the same rules in one place.

Ed25519 keys and signatures are held to the strict rules of "Taming the many EdDSAs"
(Chalkias et al., 2020) and ZIP 215's strict mode, on top of what OpenSSL checks: OpenSSL
accepted a small-order public key (the identity point, ``01 00..00``) with the "universal"
signature R = identity, S = 0, which verifies for every message, so anyone could log in as
such an account. The rules here are range checks on the encodings, not curve arithmetic:

* an encoding is canonical when its y coordinate (the low 255 bits) is below p = 2^255 - 19
  (a y at or above p names the point of y - p a second way); the only other non-canonical
  encodings, x = 0 with the sign bit set, have y = 1 or y = p - 1, which are small-order;
* the 8 points of small order (the torsion subgroup) have y in ``SMALL_ORDER_Y``: 1 (the
  identity), p - 1 (order 2), 0 (the two points of order 4) and +/-``_Y8`` (the four of
  order 8); every encoding of them, with either sign bit, is refused;
* a signature's R (its first 32 bytes) obeys both rules, and its S (the last 32, little
  endian) is below the group order L, so a signature has exactly one encoding.
"""

import re

from client_sdk.protocol.errors import InvalidField

HANDLE_PATTERN = re.compile(r"[a-z0-9._-]{3,32}")
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CAPABILITY_PATTERN = re.compile(r"[a-z0-9._/-]{1,64}")
# AnswerRequest.reason: display text the caller sees in its refusal.
ANSWER_REASON_MAX_CHARS = 200
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

_P = 2**255 - 19  # the field prime
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493  # L, the prime group order
_Y_MASK = (1 << 255) - 1  # the top bit of an encoding is the sign of x
# y of the order-8 points; p - _Y8 is the y of the other two.
_Y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


def check_handle(field: str, handle: str) -> None:
    if not handle:
        raise InvalidField(f"{field}: required")
    if HANDLE_PATTERN.fullmatch(handle) is None:
        raise InvalidField(
            f"{field}: {handle[:40]!r} is not a handle "
            "(3-32 characters of lowercase a-z, 0-9, '.', '_', '-')"
        )


def check_device_id(field: str, device_id: str) -> None:
    if not device_id:
        raise InvalidField(f"{field}: required")
    if DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        raise InvalidField(
            f"{field}: {device_id[:70]!r} is not a device id "
            "(1-64 characters of A-Z, a-z, 0-9, '_', '-')"
        )


def check_display_name(field: str, name: str, max_chars: int) -> None:
    if len(name) > max_chars:
        raise InvalidField(f"{field}: {len(name)} characters, at most {max_chars} allowed")
    if any(not ch.isprintable() for ch in name):
        raise InvalidField(f"{field}: contains control or unprintable characters")


def point_defect(encoding: bytes) -> str | None:
    """Why a 32-byte Ed25519 point encoding is refused (None: it is not): non-canonical, or
    one of the small-order points in any encoding. Whether it is on the curve at all is
    left to the verifier (``cryptography``)."""
    y = int.from_bytes(encoding, "little") & _Y_MASK
    if y % _P in SMALL_ORDER_Y:
        return "a small-order point (a weak key anyone can sign for)"
    if y >= _P:
        return "a non-canonical point encoding (y is not below 2^255 - 19)"
    return None


def key_defect(key: bytes) -> str | None:
    """Why ``key`` is not a usable Ed25519 public key (None: it is, as far as encodings go)."""
    if len(key) != ED25519_KEY_BYTES:
        return f"{len(key)} bytes, an Ed25519 public key is {ED25519_KEY_BYTES}"
    return point_defect(key)


def signature_defect(signature: bytes) -> str | None:
    """Why ``signature`` cannot be a valid strict Ed25519 signature, before any verification:
    wrong length, R small-order or non-canonical, or S not below the group order."""
    if len(signature) != ED25519_SIGNATURE_BYTES:
        return f"{len(signature)} bytes, an Ed25519 signature is {ED25519_SIGNATURE_BYTES}"
    defect = point_defect(signature[:32])
    if defect is not None:
        return f"R is {defect}"
    if int.from_bytes(signature[32:], "little") >= ED25519_ORDER:
        return "S is not below the group order (a malleable encoding)"
    return None


def check_key(field: str, key: bytes) -> None:
    """An Ed25519 public key: 32 bytes, canonical, not of small order."""
    defect = key_defect(key)
    if defect is not None:
        raise InvalidField(f"{field}: {defect}")


def check_signature(field: str, signature: bytes) -> None:
    """An Ed25519 signature's encoding (its validity is ``signing.signature_is_valid``'s)."""
    defect = signature_defect(signature)
    if defect is not None:
        raise InvalidField(f"{field}: {defect}")
