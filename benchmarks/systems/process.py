"""A server subprocess that announces readiness with one log line, for systems under test.

The line is found by a regular expression on stdout or stderr. A reader thread keeps
draining that pipe for the life of the process: a server blocked on a full pipe would look
like a slow server. The last lines are kept for the error message if the process dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

_TAIL_LINES = 40


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so the server gets SIGTERM when the benchmark dies (no orphans).

    ``setpriv`` (util-linux, in every Debian) sets the death signal and then execs, so no
    Python runs between fork and exec: a ``preexec_fn`` there is unsafe in a process
    whose gRPC threads are running, and it aborted a redis-server start in a CI run.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else list(argv)


class ServerProcessError(RuntimeError):
    """The server exited or never announced readiness."""


class ServerProcess:
    """Start ``argv``; :meth:`wait_ready` returns the first match of ``ready`` in its output."""

    def __init__(
        self,
        argv: Sequence[str],
        ready: re.Pattern[str],
        *,
        stream: str = "stderr",
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self._ready_pattern = ready
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._ready = threading.Event()
        self._match: re.Match[str] | None = None
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream {stream!r}: expected stdout or stderr")
        self._process = subprocess.Popen(
            _dying_with_parent(self.argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
            text=True,
        )
        out = self._process.stdout if stream == "stdout" else self._process.stderr
        assert out is not None
        self._reader = threading.Thread(target=self._drain, args=(out,), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        pid: int = self._process.pid
        return pid

    def _drain(self, out: object) -> None:
        for line in out:  # type: ignore[attr-defined]
            self._tail.append(line.rstrip("\n"))
            if self._match is None:
                match = self._ready_pattern.search(line)
                if match is not None:
                    self._match = match
                    self._ready.set()
        self._ready.set()  # end of output: wake the waiter, which then sees the exit

    def tail(self) -> str:
        return "\n".join(self._tail)

    async def wait_ready(self, limit_s: float) -> re.Match[str]:
        if not await asyncio.to_thread(self._ready.wait, limit_s):
            self.kill()
            raise ServerProcessError(
                f"{self.argv[0]} not ready within {limit_s:.0f} s; last output:\n{self.tail()}"
            )
        if self._match is None:
            code = await asyncio.to_thread(self._process.wait)
            raise ServerProcessError(
                f"{self.argv[0]} exited with {code} before it was ready; "
                f"last output:\n{self.tail()}"
            )
        return self._match

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait()

    async def stop(self, grace: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self._process.wait, grace)
            except subprocess.TimeoutExpired:
                self.kill()
        code: int = self._process.returncode
        return code
