"""Every write attempt the client sends, for apps and tests that keep a ledger of them.

A registration is retried with a fresh ``seq`` on every attempt (the record is re-signed), and
an attempt whose answer never came may still have landed on a supernode. An app that must
know what it may have written (an audit trail; a fault test's history) passes a
:class:`WriteObserver` to ``Client``; it is told of each attempt before it is sent and of
its outcome after. Nothing else depends on it: without an observer the client does the same.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

from client_sdk.errors import SupernodeError, Unavailable, error_from_rpc

T = TypeVar("T")


class WriteKind(enum.Enum):
    """What an attempt asks for.

    Attributes:
        REGISTER: a signed record (first registration, renewal or update) at ``seq``.
        KEEPALIVE: the lease of the record registered at ``seq`` extended, without a new
            record (acknowledged: that record stays until the new ``expires_at_ms``).
        UNREGISTER: a tombstone covering at least ``seq`` (0: the client knew none).
    """

    REGISTER = "register"
    KEEPALIVE = "keepalive"
    UNREGISTER = "unregister"


@dataclass(frozen=True)
class WriteAttempt:
    """One attempt, as sent.

    Attributes:
        handle: our account's handle.
        device_id: the device written.
        kind: register or unregister.
        seq: the record's seq (register) or the seq the tombstone covers (unregister).
        target: the supernode address the attempt went to.
    """

    handle: str
    device_id: str
    kind: WriteKind
    seq: int
    target: str


class WriteObserver(Protocol):
    """Told of each write attempt; called on the client's event loop, so keep it quick."""

    def write_sent(self, attempt: WriteAttempt) -> None:
        """Before the attempt leaves: from now on it may land."""

    def write_acknowledged(self, attempt: WriteAttempt, expires_at_ms: int | None) -> None:
        """The supernode answered OK (``expires_at_ms``: the lease granted to a register or
        a keepalive)."""

    def write_failed(self, attempt: WriteAttempt, error: SupernodeError) -> None:
        """No OK came: refused, or no answer (then it may still land, or may have)."""


async def observed(
    observer: WriteObserver | None,
    attempt: WriteAttempt,
    send: Callable[[], Awaitable[T]],
    expires_at_ms: Callable[[T], int | None],
) -> T:
    """Run one attempt's ``send``, telling ``observer`` (if any) around it. The attempt's
    own exception propagates unchanged: the session's retry logic decides on it."""
    if observer is None:
        return await send()
    observer.write_sent(attempt)
    try:
        answer = await send()
    except grpc.aio.AioRpcError as exc:
        observer.write_failed(attempt, error_from_rpc(exc))
        raise
    except BaseException:  # cancelled mid-call (close, a caller's timeout): may have landed
        observer.write_failed(attempt, Unavailable("the attempt was cancelled before its answer"))
        raise
    observer.write_acknowledged(attempt, expires_at_ms(answer))
    return answer
