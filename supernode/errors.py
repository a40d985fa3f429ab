"""The errors a supernode returns to clients.

Domain code raises these; the gRPC edge (``supernode.rpc.status``) maps each class to one
status code in one table. Every message names the offending field and the reason, because
the person reading it is an app developer looking at a failed call.
"""

from client_sdk.protocol.errors import InvalidField as InvalidField
from client_sdk.protocol.refusals import Reason as Reason


class SupernodeError(Exception):
    """A request the supernode refuses. The message is shown to the client verbatim; the
    ``reason`` (``supernode.v1.ErrorReason``) goes with it as ``google.rpc.ErrorInfo``, so
    a client branches on it, never on the text. Each class has the reason of its most
    common cause; a raise for another cause names its own."""

    reason: Reason

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidArgument(SupernodeError, InvalidField):
    """The request is malformed: a field is missing, too long, or out of range.

    The shared protocol layer's field checks raise its base, ``InvalidField``; both are
    answered with ``INVALID_ARGUMENT`` (``REFUSALS`` is what the edge catches).
    """

    reason = Reason.INVALID_FIELD


class Unauthenticated(SupernodeError):
    """The bearer token is missing, expired, or was not issued by this supernode."""

    reason = Reason.TOKEN_INVALID


class PermissionDenied(SupernodeError):
    """The caller proved an identity, but not the one that owns what it tries to change."""

    reason = Reason.NOT_OWNER


class NotFound(SupernodeError):
    """The named account does not exist."""

    reason = Reason.ACCOUNT_NOT_FOUND


class AlreadyExists(SupernodeError):
    """The handle is taken."""

    reason = Reason.HANDLE_TAKEN


class FailedPrecondition(SupernodeError):
    """The request is well formed but stale: a replayed or older device record."""

    reason = Reason.STALE_SEQ


class ResourceExhausted(SupernodeError):
    """A size, count or rate limit was hit."""

    reason = Reason.REQUEST_TOO_LARGE


class RetryLater(ResourceExhausted):
    """Refused for now, not for what was asked: the same call passes after
    ``retry_after_ms``. The edge sends the hint as ``google.rpc.RetryInfo`` and
    ``grpc-retry-pushback-ms`` (``client_sdk.protocol.pushback``), with ``reason`` as the
    ``google.rpc.ErrorInfo`` reason; ``about`` goes in its metadata."""

    reason = Reason.RATE_LIMITED

    def __init__(self, message: str, retry_after_ms: int, **about: str) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.about = about


class DeadlineExceeded(SupernodeError):
    """Waited for another party (a callee's answer, a relay peer) longer than allowed."""

    reason = Reason.CALLEE_NO_ANSWER


class Aborted(SupernodeError):
    """Superseded by a newer request of the same kind (a second Listen for one device)."""

    reason = Reason.CONFLICT


class Unavailable(SupernodeError):
    """The supernode cannot serve the request now (shutting down, store closed)."""

    reason = Reason.SHUTTING_DOWN


# Everything the gRPC edge answers with a deliberate status: our own errors, and the shared
# protocol layer's field errors (a refused field of a request or a signed body).
REFUSALS: tuple[type[Exception], ...] = (SupernodeError, InvalidField)
