"""Privacy settings and key rotations as a real app would send them, for tests."""

from collections.abc import Sequence

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, now_ms, sign_privacy

EVERYONE = pb.VISIBILITY_EVERYONE
CONTACTS = pb.VISIBILITY_CONTACTS
NOBODY = pb.VISIBILITY_NOBODY


def privacy_request(
    identity: Identity,
    handle: str,
    seq: int,
    visibility: pb.Visibility,
    allowed: Sequence[str] = (),
    blocked: Sequence[str] = (),
    **fields: object,
) -> pb.SetPrivacyRequest:
    values: dict[str, object] = {
        "handle": handle,
        "seq": seq,
        "issued_at_ms": now_ms(),
        "visibility": visibility,
        "allowed": list(allowed),
        "blocked": list(blocked),
    }
    values.update(fields)
    return sign_privacy(identity, pb.PrivacySettings(**values))  # type: ignore[arg-type]


async def set_privacy(
    conn: DirectoryConnection,
    identity: Identity,
    handle: str,
    seq: int,
    visibility: pb.Visibility,
    allowed: Sequence[str] = (),
    blocked: Sequence[str] = (),
) -> pb.PrivacySettings:
    return await conn.set_privacy(
        privacy_request(identity, handle, seq, visibility, allowed, blocked)
    )


def device_ids(response: pb.LookupResponse) -> list[str]:
    return sorted(pb.DeviceRecord.FromString(d.signed.record).device_id for d in response.devices)
