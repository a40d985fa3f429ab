"""Signed bodies as they are parsed and validated, and the device-record merge rule.

The server parses every account and device record it is sent with these functions, and the
merge rule decides between versions of one device wherever they meet. Limits are the
caller's (the server's configuration), given as any object with the three attributes of
:class:`RecordLimits`.

A signed body must be exactly what the contract describes, in exactly one encoding: it may
hold no field the contract does not name (a 60 KB unknown field in an account was once stored
and served to everyone, far past the display-name limit), and it must be the canonical
encoding of what it holds: the bytes ``SerializeToString(deterministic=True)`` gives for the
decoded message (fields in number order, each once, no default values, shortest varints).
The Python, Go, Java and C++ runtimes write these messages (no maps) that way; protobufjs
writes a field set to its default, so a JavaScript client deletes those first
(directory.proto's header says so). A body an honest SDK signed always passes, and a
record has one byte string per meaning: what is stored and served is what the contract's
checks saw, with nothing riding along.
"""

import ipaddress
from typing import NamedTuple, Protocol

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError, Message

from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import (
    CAPABILITY_PATTERN,
    check_device_id,
    check_display_name,
    check_handle,
    check_key,
)


class RecordLimits(Protocol):
    """The limits a signed body is held to (the server's ``Limits`` has them all)."""

    @property
    def max_display_name_chars(self) -> int: ...

    @property
    def max_endpoints(self) -> int: ...

    @property
    def max_capabilities(self) -> int: ...


def decode_exact(raw: bytes, message: Message, field: str) -> None:
    """Decode ``raw`` into ``message``, refusing unknown fields and non-canonical encodings
    (see the module docstring): ``InvalidField`` names ``field``."""
    type_name = message.DESCRIPTOR.full_name
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidField(f"{field}: not a serialized {type_name}") from exc
    unknown = first_unknown_field(message, field)
    if unknown is not None:
        raise InvalidField(
            f"{unknown}: not a field of the contract; a signed body holds only known fields"
        )
    if message.SerializeToString(deterministic=True) != raw:
        raise InvalidField(
            f"{field}: not the canonical encoding of a {type_name} (fields in number "
            "order, each once, no default values, shortest varints); sign the bytes "
            "SerializeToString(deterministic=True) gives"
        )


def first_unknown_field(message: Message, path: str) -> str | None:
    """Where the first field ``message`` (or a message inside it) does not know is, as
    ``path.sub[i]: field N``; None when there is none."""
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        return f"{path}: field {unknown[0].field_number}"
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        values = value if descriptor.is_repeated else [value]
        for index, inner in enumerate(values):
            suffix = f"[{index}]" if descriptor.is_repeated else ""
            found = first_unknown_field(inner, f"{path}.{descriptor.name}{suffix}")
            if found is not None:
                return found
    return None


def parse_account(raw: bytes, limits: RecordLimits) -> pb.Account:
    """Decode and validate an account body as sent by its creator."""
    account = pb.Account()
    decode_exact(raw, account, "account")
    check_handle("account.handle", account.handle)
    check_key("account.account_key", account.account_key)
    check_display_name("account.display_name", account.display_name, limits.max_display_name_chars)
    return account


def parse_device_record(raw: bytes, limits: RecordLimits) -> pb.DeviceRecord:
    """Decode and validate a device record body; the signature is checked separately."""
    record = pb.DeviceRecord()
    decode_exact(raw, record, "signed.record")
    check_device_record(record, limits)
    return record


def check_device_record(record: pb.DeviceRecord, limits: RecordLimits) -> None:
    """Every field rule of a device record, whether it was just decoded or is about to be."""
    check_handle("record.handle", record.handle)
    check_device_id("record.device_id", record.device_id)
    if record.seq == 0:
        raise InvalidField("record.seq: must be at least 1")
    check_key("record.transport_key", record.transport_key)
    if len(record.endpoints) > limits.max_endpoints:
        raise InvalidField(
            f"record.endpoints: {len(record.endpoints)} given, at most {limits.max_endpoints}"
        )
    for index, endpoint in enumerate(record.endpoints):
        _check_endpoint(f"record.endpoints[{index}]", endpoint)
    if record.status not in pb.DeviceStatus.values() or record.status == 0:
        raise InvalidField(f"record.status: {record.status} is not a known DeviceStatus")
    if len(record.capabilities) > limits.max_capabilities:
        raise InvalidField(
            f"record.capabilities: {len(record.capabilities)} given, "
            f"at most {limits.max_capabilities}"
        )
    for index, capability in enumerate(record.capabilities):
        if CAPABILITY_PATTERN.fullmatch(capability) is None:
            raise InvalidField(
                f"record.capabilities[{index}]: {capability[:70]!r} is not a capability name "
                "(1-64 characters of a-z, 0-9, '.', '_', '/', '-')"
            )


def _check_endpoint(field: str, endpoint: pb.Endpoint) -> None:
    if "%" in endpoint.address:  # ipaddress takes "fe80::1%<any text>"
        raise InvalidField(
            f"{field}.address: {endpoint.address[:50]!r} has a zone index, which means "
            "nothing to another host"
        )
    try:
        ipaddress.ip_address(endpoint.address)
    except ValueError as exc:
        raise InvalidField(
            f"{field}.address: {endpoint.address[:50]!r} is not an IP address"
        ) from exc
    if not 1 <= endpoint.port <= 65535:
        raise InvalidField(f"{field}.port: {endpoint.port} is not in 1-65535")
    if endpoint.protocol not in pb.TransportProtocol.values() or endpoint.protocol == 0:
        raise InvalidField(f"{field}.protocol: {endpoint.protocol} is not a known protocol")
    if endpoint.type not in pb.CandidateType.values() or endpoint.type == 0:
        raise InvalidField(f"{field}.type: {endpoint.type} is not a known candidate type")


class Version(NamedTuple):
    """Where one stored version of a device stands in the merge order.

    Compared as a tuple: the higher ``seq`` wins; on a tie a tombstone beats the live record
    (an unregister keeps the seq of the record it removes and must win wherever that record
    still is); on a further tie the later lease end wins (the same signed record admitted
    twice, as a retry through another node). Two versions equal in all three are the same
    write. A total order, so merging is commutative, associative and idempotent: every
    replica that has seen the same set of versions keeps the same one, in any order.
    """

    seq: int
    tombstone: bool
    expires_at_ms: int


def supersedes(new: Version, stored: Version | None) -> bool:
    """The merge rule: whether ``new`` replaces ``stored`` (nothing stored: always).

    Deterministic and clock-free (``expires_at_ms`` is a value the coordinator stamped,
    compared, never read against a clock), so retries, replication and repair are idempotent.
    """
    return stored is None or new > stored
