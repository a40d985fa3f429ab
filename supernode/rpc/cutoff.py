"""Ending a stream whose handler is stuck writing to a client that does not read.

A server-streaming handler that yields to a client which stopped reading waits in that
write for as long as the connection lives: it never gets back to its loop to see that it
was cut off. :class:`Cutoff` ends it from outside: once told to (:meth:`Cutoff.arm`), it
gives the handler ``grace_seconds`` to end on its own (with its status, when it was only
waiting for news) and then cancels the task serving the call, which frees the stream and
everything it held (gRPC resets the stream; the client sees CANCELLED and resumes).
"""

from __future__ import annotations

import asyncio

# Long enough for a handler that is merely waiting for news to wake and end with its own
# status; short against how long a stuck stream would otherwise live (hours).
GRACE_SECONDS = 1.0


class Cutoff:
    """Made inside the handler (it remembers the task serving the call)."""

    def __init__(self, grace_seconds: float = GRACE_SECONDS) -> None:
        self._task = asyncio.current_task()
        self._grace = grace_seconds
        self._timer: asyncio.TimerHandle | None = None
        self.ended = False

    def arm(self) -> None:
        """Cancel the call's task after the grace unless :meth:`disarm` runs first."""
        if self._timer is None and not self.ended and self._task is not None:
            self._timer = asyncio.get_running_loop().call_later(self._grace, self._cancel)

    def _cancel(self) -> None:
        if not self.ended and self._task is not None and not self._task.done():
            self._task.cancel()

    def disarm(self) -> None:
        """The handler is ending by itself (call it in its ``finally``)."""
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
