"""Relay tickets: who may join which relay session, until when.

A ticket is issued during rendezvous and names the two devices of one connection. It is
an HMAC-signed claim (no server state needed to check it), so any supernode sharing the
secret can verify it; single use per side is enforced by the relay that consumes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from supernode.errors import DeadlineExceeded, InvalidArgument, PermissionDenied, Reason

_MAC_BYTES = 32
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Endpoint:
    handle: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Ticket:
    session_id: str
    caller: Endpoint
    callee: Endpoint
    expires_at_ms: int

    def side_of(self, handle: str, device_id: str) -> int:
        """0 for the caller, 1 for the callee; PERMISSION_DENIED for anyone else."""
        me = Endpoint(handle, device_id)
        if me == self.caller:
            return 0
        if me == self.callee:
            return 1
        raise PermissionDenied(
            "join.ticket: not issued to this device", reason=Reason.TICKET_INVALID
        )


class TicketAuthority:
    def __init__(self, secret: bytes, *, clock_ms: Callable[[], int], ttl_ms: int) -> None:
        self._secret = secret
        self._clock_ms = clock_ms
        self._ttl_ms = ttl_ms

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, b"relay-ticket\x00" + body, hashlib.sha256).digest()

    def issue(self, caller: Endpoint, callee: Endpoint) -> tuple[bytes, Ticket]:
        ticket = Ticket(secrets.token_hex(12), caller, callee, self._clock_ms() + self._ttl_ms)
        body = _TicketBody(
            version=_VERSION,
            session_id=ticket.session_id,
            caller_handle=caller.handle,
            caller_device=caller.device_id,
            callee_handle=callee.handle,
            callee_device=callee.device_id,
            expires_at_ms=ticket.expires_at_ms,
        ).SerializeToString()
        return body + self._mac(body), ticket

    def verify(self, raw: bytes) -> Ticket:
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise PermissionDenied(
                "join.ticket: not issued by this supernode", reason=Reason.TICKET_INVALID
            )
        try:
            claims = _TicketBody.FromString(body)
        except Exception as exc:  # a valid MAC over an undecodable body: a bug, not input
            raise InvalidArgument("join.ticket: undecodable", reason=Reason.TICKET_INVALID) from exc
        if claims.expires_at_ms <= self._clock_ms():
            raise DeadlineExceeded(
                "join.ticket: expired, connect again", reason=Reason.RELAY_EXPIRED
            )
        return Ticket(
            claims.session_id,
            Endpoint(claims.caller_handle, claims.caller_device),
            Endpoint(claims.callee_handle, claims.callee_device),
            claims.expires_at_ms,
        )


# The ticket's body reuses a protobuf message so that it is versioned and compact.
_TicketBody = pb.RelayTicketBody
