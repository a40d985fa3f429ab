"""Served protobuf messages (accounts, devices, watch events) for SDK unit tests."""

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from tests.unit.factories import NOW_MS, device_record, signed


def account(identity: Identity, handle: str) -> pb.Account:
    return pb.Account(handle=handle, account_key=identity.public_key, display_name=handle.title())


def served_device(
    identity: Identity, handle: str, device_id: str = "phone", seq: int = 1, **fields: object
) -> pb.Device:
    """A device record as a supernode serves it: signed by ``identity``, with a lease."""
    record = device_record(handle=handle, device_id=device_id, seq=seq, **fields)  # type: ignore[arg-type]
    return pb.Device(
        signed=signed(identity, record), expires_at_ms=NOW_MS + 60_000, attached_supernode="n1"
    )


def lookup(identity: Identity, handle: str, *devices: pb.Device) -> pb.LookupResponse:
    return pb.LookupResponse(account=account(identity, handle), devices=list(devices))


def snapshot(
    epoch: str, revision: int, *results: pb.LookupResponse, not_found: tuple[str, ...] = ()
) -> pb.WatchEvent:
    return pb.WatchEvent(
        epoch=epoch,
        revision=revision,
        snapshot=pb.WatchSnapshot(handles=list(results), not_found=list(not_found)),
    )


def change(
    epoch: str,
    revision: int,
    handle: str,
    device_id: str,
    kind: "pb.ChangeKind",
    device: pb.Device | None = None,
    reason: "pb.OfflineReason" = pb.OFFLINE_REASON_UNSPECIFIED,
) -> pb.WatchEvent:
    message = pb.DeviceChange(handle=handle, device_id=device_id, kind=kind, reason=reason)
    if device is not None:
        message.device.CopyFrom(device)
    return pb.WatchEvent(epoch=epoch, revision=revision, change=message)


def resumed(epoch: str, revision: int) -> pb.WatchEvent:
    return pb.WatchEvent(epoch=epoch, revision=revision, resumed=True)
