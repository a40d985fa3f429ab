"""The one error the shared protocol layer raises: a field that breaks the contract."""


class InvalidField(ValueError):
    """A field of a request or a signed body is missing, malformed or over a limit.

    The message starts with the field's name (``record.endpoints[2].port: ...``) so that
    whoever reads it knows which input was refused and why. The server answers it with
    ``INVALID_ARGUMENT`` (its own ``InvalidArgument`` is a subclass), which the SDK raises
    to the app as ``client_sdk.errors.InvalidArgument`` with the same message.
    """
