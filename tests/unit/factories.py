"""Builders of valid requests for unit tests; each test then breaks one thing."""

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_device_record

NOW_MS = 1_700_000_000_000


def device_record(
    handle: str = "alice",
    device_id: str = "phone",
    seq: int = 1,
    issued_at_ms: int = NOW_MS,
    ttl_seconds: int = 60,
    **fields: object,
) -> pb.DeviceRecord:
    values: dict[str, object] = {
        "handle": handle,
        "device_id": device_id,
        "seq": seq,
        "issued_at_ms": issued_at_ms,
        "ttl_seconds": ttl_seconds,
        "transport_key": b"t" * 32,
        "status": pb.DEVICE_STATUS_ONLINE,
        "endpoints": [
            pb.Endpoint(
                address="192.0.2.1",
                port=4000,
                protocol=pb.TRANSPORT_PROTOCOL_UDP,
                type=pb.CANDIDATE_TYPE_HOST,
            )
        ],
        "capabilities": ["audio"],
    }
    values.update(fields)
    return pb.DeviceRecord(**values)  # type: ignore[arg-type]


def signed(identity: Identity, record: pb.DeviceRecord) -> pb.SignedDeviceRecord:
    return sign_device_record(identity, record)
