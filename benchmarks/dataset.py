"""The benchmark data set: N users, each an account and two devices with a few candidates.

Every system under test serves the same bytes for a user: the serialized
``supernode.v1.LookupResponse`` the supernode itself would return (account + 2 signed
devices), so payload sizes are identical across systems. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.identity import Identity
from client_sdk.protocol import wire
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_device_record

# Distinct account keys, reused round-robin: key generation is not what we measure.
_IDENTITIES = 64
# Far enough in the future that no lease ends during a run (an hour, the default max TTL).
LEASE_MS = 3_600_000


@dataclass(frozen=True)
class UserRecords:
    """One user's stored bytes, as the supernode keeps them."""

    handle: str
    account: bytes  # serialized Account
    devices: list[tuple[str, int, bytes]]  # (device_id, seq, serialized Device)

    def lookup_response(self) -> bytes:
        """What a lookup of this user returns: also the value stored in etcd and Redis."""
        return wire.lookup_response(self.account, [d for _, _, d in self.devices])


@dataclass(frozen=True)
class Dataset:
    users: int
    seed: int = 1

    @staticmethod
    def handle(index: int) -> str:
        return f"user{index:09d}"

    @cached_property
    def identities(self) -> list[Identity]:
        rng = random.Random(self.seed)
        return [
            Identity(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
            for _ in range(_IDENTITIES)
        ]

    def user(self, index: int, now_ms: int) -> UserRecords:
        """Build user ``index`` (signing its two device records)."""
        rng = random.Random(self.seed * 1_000_003 + index)
        identity = self.identities[index % _IDENTITIES]
        handle = self.handle(index)
        account = pb.Account(
            handle=handle,
            account_key=identity.public_key,
            display_name=f"User {index}",
            discoverable=True,
            created_at_ms=now_ms,
        ).SerializeToString()
        devices = []
        for device_id in ("phone", "laptop"):
            record = pb.DeviceRecord(
                handle=handle,
                device_id=device_id,
                seq=1,
                issued_at_ms=now_ms,
                ttl_seconds=3600,
                transport_key=rng.randbytes(32),
                status=pb.DEVICE_STATUS_ONLINE,
                capabilities=["audio", "video"],
                endpoints=[
                    pb.Endpoint(
                        address=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",  # noqa: E501
                        port=rng.randrange(1024, 65535),
                        protocol=pb.TRANSPORT_PROTOCOL_UDP,
                        type=pb.CANDIDATE_TYPE_HOST,
                    ),
                    pb.Endpoint(
                        address=f"198.51.100.{rng.randrange(1, 255)}",
                        port=rng.randrange(1024, 65535),
                        protocol=pb.TRANSPORT_PROTOCOL_UDP,
                        type=pb.CANDIDATE_TYPE_SERVER_REFLEXIVE,
                    ),
                    pb.Endpoint(
                        address=f"198.51.100.{rng.randrange(1, 255)}",
                        port=7700,
                        protocol=pb.TRANSPORT_PROTOCOL_TCP,
                        type=pb.CANDIDATE_TYPE_RELAY,
                    ),
                ],
            )
            device = pb.Device(
                signed=sign_device_record(identity, record),
                expires_at_ms=now_ms + LEASE_MS,
                attached_supernode="127.0.0.1:7700",
            ).SerializeToString()
            devices.append((device_id, 1, device))
        return UserRecords(handle, account, devices)

    def users_iter(
        self, now_ms: int, start: int = 0, stop: int | None = None
    ) -> Iterator[UserRecords]:
        for index in range(start, self.users if stop is None else stop):
            yield self.user(index, now_ms)
