"""The one exception hierarchy of the SDK, and the one table from gRPC status codes to it.

Apps catch our classes, never ``grpc.RpcError``: the transport is an implementation detail,
and each class says what the caller can do about it (fix the input, log in, slow down, try
later, stop trusting a peer). Every error raised for a server status carries the server's
message verbatim (for people), and the machine-readable ``reason`` (``supernode.v1.
ErrorReason``, from the ``google.rpc.ErrorInfo`` detail) and refused ``violations`` (from
``google.rpc.BadRequest``) for code: branch on those, never on the message text.
"""

from __future__ import annotations

import grpc

from client_sdk.protocol.pushback import pushback_ms
from client_sdk.protocol.refusals import FieldViolation, Reason, error_reason, field_violations
from client_sdk.retry import waitable


class SupernodeError(Exception):
    """Base of everything the SDK raises on purpose.

    ``code`` is the gRPC status the server answered with, or ``None`` for SDK-side checks;
    ``reason`` the server's ``ErrorInfo`` reason (a ``Reason`` value; "" when the error
    did not come from a supernode's decision); ``violations`` the fields it refused.
    """

    code: grpc.StatusCode | None = None
    reason: str = ""
    violations: tuple[FieldViolation, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.violations = violations


class InvalidArgument(SupernodeError):
    """The server refused a field (malformed, too long, clock skew); the message names it."""


class Unauthenticated(SupernodeError):
    """The server did not accept our session, even after logging in again."""


class PermissionDenied(SupernodeError):
    """We proved an identity, but not the one that owns what we tried to change."""


class NotFound(SupernodeError):
    """No such account (or, after a server lost its data, our own account is gone)."""


class AlreadyExists(SupernodeError):
    """The handle is taken by another account key."""


class Stale(SupernodeError):
    """FAILED_PRECONDITION: a replayed or older device record (its ``seq`` is not higher)."""


class RateLimited(SupernodeError):
    """RESOURCE_EXHAUSTED: a rate, size or count limit; back off or ask for less.

    ``retry_after_seconds``: when the server said the same call passes after a delay (a
    rate limit: ``google.rpc.RetryInfo``), that delay; None for a limit that waiting does
    not lift (devices per account, watches per session). The SDK waits for short hints
    and retries itself (within ``Backoff.pushback_cap_seconds``); a longer one (a login
    lockout) reaches the app at once."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | None = None,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message, code=code, reason=reason, violations=violations)
        self.retry_after_seconds = retry_after_seconds


class Overloaded(RateLimited):
    """RESOURCE_EXHAUSTED with a retry hint: the supernode shed the call to protect itself
    (a reconnect storm) and said when to come back. The SDK has already waited and retried
    within its budget; ``retry_after_seconds`` is the last hint."""

    retry_after_seconds: float

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float,
        code: grpc.StatusCode | None = None,
        reason: str = Reason.OVERLOADED,
    ) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds, code=code, reason=reason)


class Unavailable(SupernodeError):
    """No target answered within the retry budget (down, unreachable, or timing out)."""


class Closed(SupernodeError):
    """The client (or the watch) was closed; nothing more will be done through it."""


class SignatureError(SupernodeError):
    """A device record served to us does not verify with its account's key.

    Either a supernode (or something between it and us) altered the record, or the
    record is not for the handle it was served under. Never use such a record.
    """


class KeyChanged(SupernodeError):
    """The account key served for a handle differs from the key pinned on first use.

    This is what a substituted account looks like. If the user really rotated their key,
    the app confirms that out of band and calls ``PinStore.forget(handle)``.
    """

    def __init__(self, handle: str, pinned: bytes, served: bytes) -> None:
        super().__init__(
            f"account key of {handle!r} changed: pinned {pinned.hex()[:16]}..., "
            f"served {served.hex()[:16]}..."
        )
        self.handle = handle
        self.pinned = pinned
        self.served = served


class CertificateMismatch(SupernodeError):
    """A supernode presented a certificate whose SHA-256 fingerprint is not pinned
    (``ClientConfig.tls.pinned_sha256``): either it is not the supernode meant, or its
    certificate was replaced. Not retried; fix the pin or find out who answered."""

    def __init__(self, target: str, served_sha256: str) -> None:
        super().__init__(
            f"supernode {target} presented a certificate with SHA-256 {served_sha256}, "
            "which is not pinned (ClientConfig.tls.pinned_sha256)"
        )
        self.target = target
        self.served_sha256 = served_sha256


# The one table from gRPC status codes to SDK errors. Codes not listed (INTERNAL, UNKNOWN,
# ...) become the base class, still carrying the code and the server's message.
ERROR_FOR_STATUS: dict[grpc.StatusCode, type[SupernodeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: Stale,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def error_from_status(
    code: grpc.StatusCode,
    details: str | None,
    reason: str = "",
    violations: tuple[FieldViolation, ...] = (),
) -> SupernodeError:
    """The SDK error for a status the server (or the channel) answered with."""
    cls = ERROR_FOR_STATUS.get(code, SupernodeError)
    message = details or code.name.lower().replace("_", " ")
    return cls(message, code=code, reason=reason, violations=violations)


def pushback_of(exc: grpc.aio.AioRpcError) -> int | None:
    """The call's retry hint in milliseconds (``client_sdk.protocol.pushback``), if any."""
    return pushback_ms(exc.trailing_metadata())


def retry_hint_of(exc: grpc.aio.AioRpcError, cap_seconds: float) -> int | None:
    """The hint the SDK waits for before retrying ``exc``'s call (``retry.waitable``)."""
    trailing = exc.trailing_metadata()
    return waitable(pushback_ms(trailing), error_reason(trailing), cap_seconds)


def error_from_rpc(exc: grpc.aio.AioRpcError) -> SupernodeError:
    """The SDK error for a failed call; a refusal with a retry hint keeps the hint:
    ``Overloaded`` when the node shed the call (``ErrorInfo`` reason ``OVERLOADED``, or
    an older node's bare pushback trailer), ``RateLimited`` when the caller went over a
    rate limit."""
    trailing = exc.trailing_metadata()
    reason = error_reason(trailing)
    hint = pushback_of(exc) if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else None
    if hint is not None:
        if reason in ("", Reason.OVERLOADED):
            message = exc.details() or "overloaded"
            return Overloaded(message, retry_after_seconds=hint / 1000, code=exc.code())
        message = exc.details() or "rate limited"
        return RateLimited(message, retry_after_seconds=hint / 1000, code=exc.code(), reason=reason)
    violations = tuple(field_violations(trailing))
    return error_from_status(exc.code(), exc.details(), reason, violations)
