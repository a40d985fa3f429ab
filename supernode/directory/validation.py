"""Field rules shared by every request that names a handle, device or display name.

Each check raises :class:`InvalidArgument` with the field name first, so a client can tell
which of its inputs was refused and why.
"""

import re
from dataclasses import dataclass

from supernode.errors import InvalidArgument

HANDLE_PATTERN = re.compile(r"[a-z0-9._-]{3,32}")
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CAPABILITY_PATTERN = re.compile(r"[a-z0-9._/-]{1,64}")
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class Limits:
    """Size and count limits. Defaults suit a public service; tests and operators tune them."""

    max_message_bytes: int = 64 * 1024
    max_display_name_chars: int = 64
    max_endpoints: int = 16
    max_capabilities: int = 16
    max_devices_per_handle: int = 16
    max_lookup_many: int = 1000
    search_min_query_chars: int = 2
    search_default_results: int = 10
    search_max_results: int = 50
    search_rate_per_second: float = 2.0
    search_burst: int = 10
    max_watch_handles: int = 1000
    max_watches_per_session: int = 8
    watch_queue_events: int = 1024
    watch_history_events: int = 100_000
    offer_rate_per_second: float = 2.0
    offer_burst: int = 20
    answer_timeout_ms: int = 10_000
    relay_ticket_ttl_seconds: int = 60
    relay_max_bytes: int = 256 << 20
    relay_max_bytes_per_second: int = 4 << 20
    relay_idle_timeout_seconds: float = 30.0


def check_handle(field: str, handle: str) -> None:
    if not handle:
        raise InvalidArgument(f"{field}: required")
    if HANDLE_PATTERN.fullmatch(handle) is None:
        raise InvalidArgument(
            f"{field}: {handle[:40]!r} is not a handle "
            "(3-32 characters of lowercase a-z, 0-9, '.', '_', '-')"
        )


def check_device_id(field: str, device_id: str) -> None:
    if not device_id:
        raise InvalidArgument(f"{field}: required")
    if DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        raise InvalidArgument(
            f"{field}: {device_id[:70]!r} is not a device id "
            "(1-64 characters of A-Z, a-z, 0-9, '_', '-')"
        )


def check_display_name(field: str, name: str, limits: Limits) -> None:
    if len(name) > limits.max_display_name_chars:
        raise InvalidArgument(
            f"{field}: {len(name)} characters, at most {limits.max_display_name_chars} allowed"
        )
    if any(not ch.isprintable() for ch in name):
        raise InvalidArgument(f"{field}: contains control or unprintable characters")


def check_key(field: str, key: bytes) -> None:
    if len(key) != ED25519_KEY_BYTES:
        raise InvalidArgument(
            f"{field}: {len(key)} bytes, an Ed25519 public key is {ED25519_KEY_BYTES}"
        )


def check_signature_length(field: str, signature: bytes) -> None:
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise InvalidArgument(
            f"{field}: {len(signature)} bytes, an Ed25519 signature is {ED25519_SIGNATURE_BYTES}"
        )
