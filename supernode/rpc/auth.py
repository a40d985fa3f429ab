"""Bearer-token extraction from call metadata."""

import grpc

from supernode.errors import Reason, Unauthenticated
from supernode.sessions import Audience, Session, SessionAuthority

_PREFIX = "bearer "


def session_of(
    context: grpc.aio.ServicerContext,
    authority: SessionAuthority,
    audience: Audience = Audience.SESSION,
) -> Session:
    """The caller's session, from ``authorization: Bearer <token>``; UNAUTHENTICATED if
    none, PERMISSION_DENIED if the token was issued for another ``audience`` (a node's
    token on a public method, a client's on the cluster service)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            if not text[: len(_PREFIX)].lower() == _PREFIX:
                raise Unauthenticated(
                    "authorization: expected 'Bearer <token>'", reason=Reason.TOKEN_MISSING
                )
            return authority.authenticate(text[len(_PREFIX) :].strip(), audience)
    raise Unauthenticated(
        "authorization: missing bearer token, log in first", reason=Reason.TOKEN_MISSING
    )
