"""Field rules for every handle, device id, display name, key and signature on the wire.

Each check raises :class:`InvalidField` with the field name first, so a client can tell which
of its inputs was refused and why. They are part of the contract, beside the generated code,
so that every implementation of either side reads the same rules in one place.
"""

import re

from client_sdk.protocol.errors import InvalidField

HANDLE_PATTERN = re.compile(r"[a-z0-9._-]{3,32}")
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CAPABILITY_PATTERN = re.compile(r"[a-z0-9._/-]{1,64}")
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


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


def check_key(field: str, key: bytes) -> None:
    if len(key) != ED25519_KEY_BYTES:
        raise InvalidField(
            f"{field}: {len(key)} bytes, an Ed25519 public key is {ED25519_KEY_BYTES}"
        )


def check_signature_length(field: str, signature: bytes) -> None:
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise InvalidField(
            f"{field}: {len(signature)} bytes, an Ed25519 signature is {ED25519_SIGNATURE_BYTES}"
        )
