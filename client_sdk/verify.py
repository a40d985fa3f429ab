"""Check what a supernode serves before the app sees it.

A supernode stores and serves device records but cannot sign them: each record is signed by
its account key, and the account key is pinned on first use (``client_sdk.pins``). So for
every record we check, in this order: the account is the one we asked for, its key is the
pinned one, the signature verifies with it (the same ``signature_is_valid`` and domain the
supernode uses on write; ``client_sdk.verified`` remembers signatures that verified), and
the record names the handle (and device) it was served under, so a valid record of one user
cannot be passed off as another's.

The account itself comes with its creator's CreateAccount signature (``account_signature``,
empty only for accounts stored before signatures were kept): when present it must verify
with the account's own key, so the binding of handle to key is checked, not only pinned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from client_sdk.convert import account_from_pb, device_from_pb
from client_sdk.errors import SignatureError
from client_sdk.pins import PinStore
from client_sdk.protocol.rotation import RotationError, chain_keys
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN, DEVICE_RECORD_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import key_defect
from client_sdk.types import Account, Device, Presence
from client_sdk.verified import verifies


def check_account_signature(account: pb.Account, account_signature: bytes) -> None:
    """``SignatureError`` unless ``account_signature`` (when there is one) is the account
    key's CreateAccount signature of ``account``. The signed bytes are the account's
    canonical encoding: the bytes the creator signed and the supernode stored (it refuses
    any other encoding), so re-encoding the served account gives them back."""
    if not account_signature:
        return  # stored before signatures were kept: the pin alone vouches for it
    body = account.SerializeToString(deterministic=True)
    if not verifies(account.account_key, CREATE_ACCOUNT_DOMAIN, body, account_signature):
        raise SignatureError(
            f"the account {account.handle!r} served does not verify with its creation signature"
        )


def account_keys(
    account: pb.Account,
    expected_handle: str,
    rotations: Sequence[pb.SignedKeyRotation] = (),
    account_signature: bytes = b"",
) -> list[bytes]:
    """The account's keys, creation key first, each rotation checked (signed by the key
    before it, at its place); ``SignatureError`` for a wrong handle, a creation signature
    that does not verify or a broken chain."""
    if account.handle != expected_handle:
        raise SignatureError(
            f"asked for {expected_handle!r}, the supernode answered with {account.handle!r}"
        )
    weakness = key_defect(account.account_key)
    if weakness is not None:  # anyone can sign for such a key: nothing it signs means anything
        raise SignatureError(f"the account key of {account.handle!r} is {weakness}")
    check_account_signature(account, account_signature)
    try:
        return chain_keys(account.handle, account.account_key, rotations)
    except RotationError as exc:
        raise SignatureError(f"the key rotations served for {account.handle!r}: {exc}") from exc


def verify_account(
    account: pb.Account,
    pins: PinStore,
    expected_handle: str,
    rotations: Sequence[pb.SignedKeyRotation] = (),
    account_signature: bytes = b"",
) -> Account:
    """The account with its current key (the end of its rotation chain), once it is the
    one asked for, its creation signature (if served) verifies and the chain passes
    through the pin (or is pinned now). Raises ``SignatureError`` or ``KeyChanged``."""
    keys = account_keys(account, expected_handle, rotations, account_signature)
    return _pinned(account, pins, keys)


def _pinned(account: pb.Account, pins: PinStore, keys: Sequence[bytes]) -> Account:
    current = pins.follow(account.handle, keys)
    return dataclasses.replace(account_from_pb(account), account_key=current)


def verify_device(
    device: pb.Device, account_key: bytes, handle: str, device_id: str | None = None
) -> Device:
    """The public ``Device`` for a served record that verifies, else ``SignatureError``."""
    signed = device.signed
    if not verifies(account_key, DEVICE_RECORD_DOMAIN, signed.record, signed.signature):
        raise SignatureError(
            f"a device record served for {handle!r} does not verify with its account key"
        )
    record = pb.DeviceRecord()
    try:
        record.ParseFromString(signed.record)
    except DecodeError as exc:  # signed garbage: only the account key holder could do that
        raise SignatureError(f"a signed device record of {handle!r} does not decode") from exc
    if record.handle != handle:
        raise SignatureError(
            f"a record signed for {record.handle!r} was served as a device of {handle!r}"
        )
    if device_id is not None and record.device_id != device_id:
        raise SignatureError(
            f"the record of device {record.device_id!r} was served as {handle!r}/{device_id!r}"
        )
    return device_from_pb(record, device)


def verify_presence(response: pb.LookupResponse, pins: PinStore, expected_handle: str) -> Presence:
    """A lookup result (also a snapshot entry) with every device verified by the current
    key. A record signed by an earlier key of the chain is dropped, not an error: it was
    registered before the rotation and is served until its lease ends."""
    keys = account_keys(
        response.account, expected_handle, response.rotations, response.account_signature
    )
    account = _pinned(response.account, pins, keys)
    earlier = keys[:-1]
    devices = tuple(
        verify_device(device, account.account_key, account.handle)
        for device in response.devices
        if not earlier or not _signed_by_any(device, earlier)
    )
    return Presence(account, devices)


def _signed_by_any(device: pb.Device, keys: Sequence[bytes]) -> bool:
    signed = device.signed
    return any(verifies(key, DEVICE_RECORD_DOMAIN, signed.record, signed.signature) for key in keys)
