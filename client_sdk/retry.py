"""What to do after a failed attempt: the retry rules, as a pure function of the status.

Only failures that say nothing about the request itself are retried: the target is down
or slow (UNAVAILABLE, DEADLINE_EXCEEDED: try the next target after a backoff), the call was
cut by the other side (CANCELLED that we did not ask for: a supernode shutting down ends
the calls still on its connections so; our own cancellation raises ``CancelledError``, and
a closed client stops retrying), our token
is no longer accepted (UNAUTHENTICATED: log in again once, then retry at once), or the
target shed the call to protect itself (RESOURCE_EXHAUSTED *with* a retry-pushback hint,
``client_sdk.protocol.pushback``: wait at least the hint, then retry on the same target,
where our token is good; moving on would cost another node a login in the middle of a
storm). A rate limit's refusal carries the same hint (``google.rpc.RetryInfo``) and is
waited for and retried the same way, when the hint is within the client's cap
(:func:`waitable`): a longer one (a login lockout) is the app's to hear at once, not a
call's to sit out. Everything else is the server's answer to this request, and retrying
would get the same: a RESOURCE_EXHAUSTED without a hint is a limit (devices per account,
watches per session), final as before.
"""

from __future__ import annotations

import enum

import grpc

from client_sdk.protocol.refusals import Reason

# CANCELLED: measured in a rolling restart, 2 of ~1,000 lookups failed with it (the node
# they were on was stopping) while the other nodes would have answered.
FAILOVER_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


class Action(enum.Enum):
    FAILOVER = "failover"  # move to the next target, back off, try again
    RELOGIN = "relogin"  # drop the token, log in, try again now
    WAIT = "wait"  # shed by an overloaded target: wait for its hint, try it again
    FAIL = "fail"  # raise the mapped error


def waitable(pushback_ms: int | None, reason: str, cap_seconds: float) -> int | None:
    """The hint if the client will wait for it, else None. A shed call (``reason``
    ``OVERLOADED``, or none from an older node) is always retried, its wait capped at
    ``cap_seconds``; a rate limit's only when its hint is within the cap (retrying a
    lockout of minutes after the cap would only be refused again)."""
    if pushback_ms is None or reason in ("", "OVERLOADED"):
        return pushback_ms
    return pushback_ms if pushback_ms <= cap_seconds * 1000 else None


def shed(code: grpc.StatusCode, pushback_ms: int | None) -> bool:
    """The target refused the call to protect itself and said when to come back."""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and pushback_ms is not None


def after_failure(
    code: grpc.StatusCode,
    *,
    authenticated: bool,
    relogged_in: bool,
    pushback_ms: int | None = None,
) -> Action:
    """``pushback_ms``: the call's retry hint (``client_sdk.protocol.pushback``), if any."""
    if shed(code, pushback_ms):
        return Action.WAIT
    if code in FAILOVER_CODES:
        return Action.FAILOVER
    if code == grpc.StatusCode.UNAUTHENTICATED and authenticated and not relogged_in:
        # A supernode restarted with a fresh secret, a token expired early, or we failed
        # over to a node that does not know our session: one fresh login settles it.
        return Action.RELOGIN
    return Action.FAIL


class StreamAction(enum.Enum):
    RESUME = "resume"  # reconnect to the same target now, from the last position
    FAILOVER = "failover"
    RELOGIN = "relogin"
    WAIT = "wait"  # the target shed the open: wait for its hint, reopen there
    FAIL = "fail"


def after_stream_failure(
    code: grpc.StatusCode,
    *,
    received: bool,
    relogged_in: bool,
    pushback_ms: int | None = None,
    reason: str = "",
) -> StreamAction:
    """What a watch does when its stream ends with ``code`` (and the ``ErrorInfo``
    ``reason``, "" when none came).

    RESOURCE_EXHAUSTED with a retry hint is an overloaded supernode refusing to open the
    stream: wait, then reopen. Without a hint, ``TOO_SLOW`` is the supernode cutting off a
    reader that fell behind: resume at once; ``WATCH_LIMIT`` and ``REQUEST_TOO_LARGE``
    are answers about the request: final. A server that sends no reason is read by when
    it refused (after the stream delivered something: a cut-off reader; before: a limit).
    CANCELLED that we did not ask for is the server or a proxy dropping the stream, so it
    is treated like UNAVAILABLE (as for a call).
    """
    if shed(code, pushback_ms):
        return StreamAction.WAIT
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if reason == Reason.TOO_SLOW or (not reason and received):
            return StreamAction.RESUME
        return StreamAction.FAIL
    return StreamAction(after_failure(code, authenticated=True, relogged_in=relogged_in).value)
