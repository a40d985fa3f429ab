"""The one error the shared protocol layer raises: a field that breaks the contract."""

from client_sdk.protocol.refusals import FieldViolation, Reason


class InvalidField(ValueError):
    """A field of a request or a signed body is missing, malformed or over a limit.

    The message starts with the field's name (``record.endpoints[2].port: ...``) so that
    whoever reads it knows which input was refused and why. The server answers it with
    ``INVALID_ARGUMENT`` (its own ``InvalidArgument`` is a subclass), its ``reason`` as the
    ``ErrorInfo`` reason and :attr:`violation` as a ``BadRequest`` field violation; the
    SDK raises it to the app as ``client_sdk.errors.InvalidArgument``.
    """

    reason: Reason = Reason.INVALID_FIELD

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def violation(self) -> FieldViolation:
        """The field the message names (the text before its first ": ") and why."""
        field, _, description = str(self).partition(": ")
        return FieldViolation(field, description)
