"""Signed bodies: what is signed, how it is verified, and the device-record merge rule.

Every signed body travels as the exact bytes its signer serialized, so verification never
re-encodes anything (protobuf encoding is not canonical across implementations). The signed
payload is a domain-separation string, a zero byte, then the body: a signature made for one
purpose (say, a login challenge) can never be replayed as another (a device record).

Both the supernode (verify on write) and ``client_sdk`` (sign; verify again on lookup) use
this module, so the two sides cannot drift apart.
"""

import ipaddress
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from supernode.directory.validation import (
    CAPABILITY_PATTERN,
    Limits,
    check_device_id,
    check_display_name,
    check_handle,
    check_key,
)
from supernode.errors import InvalidArgument
from supernode.v1 import directory_pb2 as pb

CREATE_ACCOUNT_DOMAIN = b"supernode.v1.CreateAccount"
LOGIN_DOMAIN = b"supernode.v1.Login"
DEVICE_RECORD_DOMAIN = b"supernode.v1.DeviceRecord"


def signing_payload(domain: bytes, body: bytes) -> bytes:
    """The bytes an Ed25519 signature covers for ``body`` signed for ``domain``."""
    return domain + b"\x00" + body


@lru_cache(maxsize=65536)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    # Parsing a key costs about as much as a verification; accounts are verified often.
    return Ed25519PublicKey.from_public_bytes(raw)


def signature_is_valid(public_key: bytes, domain: bytes, body: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``body`` for ``domain``."""
    try:
        _public_key(public_key).verify(signature, signing_payload(domain, body))
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_account(raw: bytes, limits: Limits) -> pb.Account:
    """Decode and validate an account body as sent by its creator."""
    account = pb.Account()
    try:
        account.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidArgument("account: not a serialized supernode.v1.Account") from exc
    check_handle("account.handle", account.handle)
    check_key("account.account_key", account.account_key)
    check_display_name("account.display_name", account.display_name, limits)
    return account


def parse_device_record(raw: bytes, limits: Limits) -> pb.DeviceRecord:
    """Decode and validate a device record body; the signature is checked separately."""
    record = pb.DeviceRecord()
    try:
        record.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidArgument("signed.record: not a serialized supernode.v1.DeviceRecord") from exc
    check_handle("record.handle", record.handle)
    check_device_id("record.device_id", record.device_id)
    if record.seq == 0:
        raise InvalidArgument("record.seq: must be at least 1")
    check_key("record.transport_key", record.transport_key)
    if len(record.endpoints) > limits.max_endpoints:
        raise InvalidArgument(
            f"record.endpoints: {len(record.endpoints)} given, at most {limits.max_endpoints}"
        )
    for index, endpoint in enumerate(record.endpoints):
        _check_endpoint(f"record.endpoints[{index}]", endpoint)
    if record.status not in pb.DeviceStatus.values() or record.status == 0:
        raise InvalidArgument(f"record.status: {record.status} is not a known DeviceStatus")
    if len(record.capabilities) > limits.max_capabilities:
        raise InvalidArgument(
            f"record.capabilities: {len(record.capabilities)} given, "
            f"at most {limits.max_capabilities}"
        )
    for index, capability in enumerate(record.capabilities):
        if CAPABILITY_PATTERN.fullmatch(capability) is None:
            raise InvalidArgument(
                f"record.capabilities[{index}]: {capability[:70]!r} is not a capability name "
                "(1-64 characters of a-z, 0-9, '.', '_', '/', '-')"
            )
    return record


def _check_endpoint(field: str, endpoint: pb.Endpoint) -> None:
    try:
        ipaddress.ip_address(endpoint.address)
    except ValueError as exc:
        raise InvalidArgument(
            f"{field}.address: {endpoint.address[:50]!r} is not an IP address"
        ) from exc
    if not 1 <= endpoint.port <= 65535:
        raise InvalidArgument(f"{field}.port: {endpoint.port} is not in 1-65535")
    if endpoint.protocol not in pb.TransportProtocol.values() or endpoint.protocol == 0:
        raise InvalidArgument(f"{field}.protocol: {endpoint.protocol} is not a known protocol")
    if endpoint.type not in pb.CandidateType.values() or endpoint.type == 0:
        raise InvalidArgument(f"{field}.type: {endpoint.type} is not a known candidate type")


def supersedes(new_seq: int, stored_seq: int | None) -> bool:
    """The merge rule: for one device, the record (or tombstone) with the higher seq wins.

    Deterministic and clock-free, so retries, replication and repair are idempotent.
    """
    return stored_seq is None or new_seq > stored_seq
