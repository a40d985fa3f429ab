"""Protobuf framing of stored bytes, so lookups never decode and re-encode records.

A serialized message placed under a length-delimited field tag is a valid encoding of that
(repeated) message field, so a ``LookupResponse`` is the stored account bytes and the stored
device bytes, each behind a tag and a length. Unit tests check every function here against
the protobuf runtime's own parse.
"""

from collections.abc import Sequence

_WIRE_TYPE_LEN = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TAGS = {number: _varint((number << 3) | _WIRE_TYPE_LEN) for number in range(1, 16)}


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (message, bytes or string) with a field number below 16."""
    return _TAGS[number] + _varint(len(payload)) + payload


def repeated_field(number: int, payloads: list[bytes]) -> bytes:
    """A repeated length-delimited field: each payload behind the same tag."""
    tag = _TAGS[number]
    return b"".join(tag + _varint(len(p)) + p for p in payloads)


def _optional(number: int, payload: bytes) -> bytes:
    """A bytes field, left out when empty (as proto3 leaves out a default value)."""
    return field(number, payload) if payload else b""


def lookup_response(
    account: bytes,
    devices: list[bytes],
    rotations: Sequence[bytes] = (),
    account_signature: bytes = b"",
) -> bytes:
    """``LookupResponse{account = 1, repeated devices = 2, repeated rotations = 3,
    account_signature = 4}`` from stored bytes (``rotations``: serialized
    ``SignedKeyRotation``, oldest first)."""
    return (
        field(1, account)
        + repeated_field(2, devices)
        + repeated_field(3, list(rotations))
        + _optional(4, account_signature)
    )


def lookup_many_response(
    results: list[bytes], not_found: list[str], unanswered: list[str] | None = None
) -> bytes:
    """``LookupManyResponse{repeated results = 1, repeated not_found = 2,
    repeated unanswered = 3}``."""
    return (
        repeated_field(1, results)
        + repeated_field(2, [h.encode() for h in not_found])
        + repeated_field(3, [h.encode() for h in unanswered or ()])
    )


def get_account_response(
    account: bytes, rotations: Sequence[bytes] = (), account_signature: bytes = b""
) -> bytes:
    """``GetAccountResponse{account = 1, repeated rotations = 2, account_signature = 3}``
    (without rotations, the same shape as ``CreateAccountResponse``)."""
    return field(1, account) + repeated_field(2, list(rotations)) + _optional(3, account_signature)
