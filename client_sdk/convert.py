"""Translation between generated protobuf messages and the SDK's public types.

The only module (with ``transport`` and ``verify``) that knows the wire types, so the
public API never leaks protobuf. Conversions here do not verify anything: ``verify`` decides
what may be converted.
"""

from __future__ import annotations

from collections.abc import Iterable

from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.types import (
    Account,
    CandidateType,
    Device,
    DeviceStatus,
    Endpoint,
    OfflineReason,
    PrivacySettings,
    SearchResult,
    TransportProtocol,
    Visibility,
)

_STATUS_TO_PB = {
    DeviceStatus.ONLINE: pb.DEVICE_STATUS_ONLINE,
    DeviceStatus.AWAY: pb.DEVICE_STATUS_AWAY,
    DeviceStatus.BUSY: pb.DEVICE_STATUS_BUSY,
}
_PROTOCOL_TO_PB = {
    TransportProtocol.UDP: pb.TRANSPORT_PROTOCOL_UDP,
    TransportProtocol.TCP: pb.TRANSPORT_PROTOCOL_TCP,
}
_CANDIDATE_TO_PB = {
    CandidateType.HOST: pb.CANDIDATE_TYPE_HOST,
    CandidateType.SERVER_REFLEXIVE: pb.CANDIDATE_TYPE_SERVER_REFLEXIVE,
    CandidateType.RELAY: pb.CANDIDATE_TYPE_RELAY,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_PROTOCOL_FROM_PB = {v: k for k, v in _PROTOCOL_TO_PB.items()}
_CANDIDATE_FROM_PB = {v: k for k, v in _CANDIDATE_TO_PB.items()}
_REASON_FROM_PB = {
    pb.OFFLINE_REASON_UNREGISTERED: OfflineReason.UNREGISTERED,
    pb.OFFLINE_REASON_EXPIRED: OfflineReason.EXPIRED,
}


def account_from_pb(account: pb.Account) -> Account:
    return Account(
        handle=account.handle,
        account_key=account.account_key,
        display_name=account.display_name,
        discoverable=account.discoverable,
        created_at_ms=account.created_at_ms,
    )


_VISIBILITY_TO_PB = {
    Visibility.EVERYONE: pb.VISIBILITY_EVERYONE,
    Visibility.CONTACTS: pb.VISIBILITY_CONTACTS,
    Visibility.NOBODY: pb.VISIBILITY_NOBODY,
}
_VISIBILITY_FROM_PB = {value: key for key, value in _VISIBILITY_TO_PB.items()}


def privacy_to_pb(handle: str, settings: PrivacySettings, issued_at_ms: int) -> pb.PrivacySettings:
    return pb.PrivacySettings(
        handle=handle,
        seq=settings.seq,
        issued_at_ms=issued_at_ms,
        visibility=_VISIBILITY_TO_PB[settings.visibility],
        allowed=sorted(settings.allowed),
        blocked=sorted(settings.blocked),
    )


def privacy_from_pb(settings: pb.PrivacySettings) -> PrivacySettings:
    return PrivacySettings(
        visibility=_VISIBILITY_FROM_PB.get(settings.visibility, Visibility.EVERYONE),
        allowed=frozenset(settings.allowed),
        blocked=frozenset(settings.blocked),
        seq=settings.seq,
    )


def search_result_from_pb(account: pb.Account) -> SearchResult:
    return SearchResult(account.handle, account.display_name, account.account_key)


def endpoint_to_pb(endpoint: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        address=endpoint.address,
        port=endpoint.port,
        protocol=_PROTOCOL_TO_PB[endpoint.protocol],
        type=_CANDIDATE_TO_PB[endpoint.type],
    )


def endpoint_from_pb(endpoint: pb.Endpoint) -> Endpoint:
    # A signed record from a newer SDK may use values we do not know yet; fall back to the
    # common case rather than refusing a record whose signature is valid.
    return Endpoint(
        address=endpoint.address,
        port=endpoint.port,
        protocol=_PROTOCOL_FROM_PB.get(endpoint.protocol, TransportProtocol.UDP),
        type=_CANDIDATE_FROM_PB.get(endpoint.type, CandidateType.HOST),
    )


def status_to_pb(status: DeviceStatus) -> pb.DeviceStatus:
    return _STATUS_TO_PB[status]


def reason_from_pb(reason: pb.OfflineReason) -> OfflineReason:
    return _REASON_FROM_PB.get(reason, OfflineReason.UNKNOWN)


def device_record_pb(
    *,
    handle: str,
    device_id: str,
    seq: int,
    issued_at_ms: int,
    ttl_seconds: int,
    endpoints: Iterable[Endpoint],
    transport_key: bytes,
    status: DeviceStatus,
    capabilities: Iterable[str],
) -> pb.DeviceRecord:
    """The record body a device signs for registration."""
    return pb.DeviceRecord(
        handle=handle,
        device_id=device_id,
        seq=seq,
        issued_at_ms=issued_at_ms,
        ttl_seconds=ttl_seconds,
        endpoints=[endpoint_to_pb(e) for e in endpoints],
        transport_key=transport_key,
        status=status_to_pb(status),
        capabilities=list(capabilities),
    )


def device_from_pb(record: pb.DeviceRecord, device: pb.Device) -> Device:
    """A public ``Device`` from a parsed record and the lease around it."""
    return Device(
        handle=record.handle,
        device_id=record.device_id,
        seq=record.seq,
        issued_at_ms=record.issued_at_ms,
        ttl_seconds=record.ttl_seconds,
        endpoints=tuple(endpoint_from_pb(e) for e in record.endpoints),
        transport_key=record.transport_key,
        status=_STATUS_FROM_PB.get(record.status, DeviceStatus.ONLINE),
        capabilities=tuple(record.capabilities),
        expires_at_ms=device.expires_at_ms,
        attached_supernode=device.attached_supernode,
        record=device.signed.record,
        signature=device.signed.signature,
    )
