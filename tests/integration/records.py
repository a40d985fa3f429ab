"""Device records as a real app would build them, for integration tests."""

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import now_ms, sign_device_record


def device(
    identity: Identity, handle: str, device_id: str, seq: int = 1, ttl: int = 60, **fields: object
) -> pb.SignedDeviceRecord:
    values: dict[str, object] = {
        "handle": handle,
        "device_id": device_id,
        "seq": seq,
        "issued_at_ms": now_ms(),
        "ttl_seconds": ttl,
        "transport_key": Identity.generate().public_key,
        "status": pb.DEVICE_STATUS_ONLINE,
        "endpoints": [
            pb.Endpoint(
                address="198.18.0.10",
                port=40000 + seq % 20000,  # seqs may be times in ms
                protocol=pb.TRANSPORT_PROTOCOL_UDP,
                type=pb.CANDIDATE_TYPE_HOST,
            )
        ],
    }
    values.update(fields)
    return sign_device_record(identity, pb.DeviceRecord(**values))  # type: ignore[arg-type]
