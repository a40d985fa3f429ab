"""Test-side drivers for the programs run inside lab namespaces.

Each program speaks JSON lines on stdout (see ``netprobe.py`` and ``ice_peer.py``); the
drivers read them on a thread so that every wait has a deadline and a hung program fails
the test with its stderr instead of hanging it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.nat.lab import Host

Address = tuple[str, int]
STUN_PORTS = (3478, 3479)
ECHO_PORT = 7
TCP_PORT = 7


class JsonLinesProcess:
    """A lab process whose stdout is JSON lines and whose stdin takes JSON lines.

    Reusable for any program a P2P test runs in a namespace (an SDK peer, say): print one
    JSON object per line, flush, and the test can wait for each with a deadline.
    """

    def __init__(self, host: Host, cmd: Sequence[str], *, lifetime: float | None = None) -> None:
        self.host = host
        self.process = host.popen(
            cmd,
            lifetime=lifetime,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)  # end of output

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def next_line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line; AssertionError with the program's stderr when none comes."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise AssertionError(
                f"[{self.host.name}] no output within {timeout} s "
                f"(exit {self.process.poll()}):\n{''.join(self.stderr)}"
            )
        return line

    def write_line(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


class ProbeServer(JsonLinesProcess):
    """``netprobe serve``: STUN responders, UDP and TCP echo, reporting what arrives."""

    def __init__(self, host: Host, stun_ports: Sequence[int] = STUN_PORTS) -> None:
        ports = [arg for port in stun_ports for arg in ("--stun-port", str(port))]
        super().__init__(
            host,
            host.python("-m", "tests.nat.netprobe", "serve", "--host", host.address, *ports,
                        "--echo-port", str(ECHO_PORT), "--tcp-port", str(TCP_PORT)),
        )  # fmt: skip
        ready = self.next_line(timeout=30)
        assert ready["event"] == "ready", ready
        self.stun = [(host.address, int(port)) for port in ready["stun"]]
        self.echo = (host.address, ECHO_PORT)
        self.tcp = (host.address, TCP_PORT)
        self.events: list[dict[str, Any]] = []

    def sources(self, kind: str = "udp") -> set[str]:
        """Addresses that sent this server UDP datagrams (or TCP connections) so far."""
        while True:
            try:
                event = self.lines.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.events.append(event)
        return {e["source"][0] for e in self.events if e["event"] == kind}

    def saw(self, address: str, kind: str = "udp", timeout: float = 10.0) -> bool:
        """Whether ``address`` shows up as a source, waiting for lines still in transit."""
        deadline = time.monotonic() + timeout
        while address not in self.sources(kind):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class ProbeClient(JsonLinesProcess):
    """``netprobe client``: one UDP socket in a client namespace, driven command by command."""

    def __init__(self, host: Host, port: int = 0) -> None:
        super().__init__(
            host, host.python("-m", "tests.nat.netprobe", "client", "--port", str(port))
        )
        ready = self.next_line(timeout=30)
        self.local: Address = (ready["local"][0], int(ready["local"][1]))

    def ask(self, op: str, to: Address | None = None, **fields: Any) -> dict[str, Any]:
        """Run one command and return its answer line (every command has a bounded wait)."""
        self.write_line({"op": op, "to": list(to) if to else None, **fields})
        answer = self.next_line(timeout=30)
        assert answer.get("op") == op, answer
        return answer

    def stun(self, to: Address, tries: int = 3) -> Address | None:
        """The mapped (server-reflexive) address the STUN server at ``to`` reports."""
        mapped = self.ask("stun", to, tries=tries)["mapped"]
        return (mapped[0], int(mapped[1])) if mapped else None

    def echo(self, to: Address, tries: int = 3) -> bool:
        """Whether a UDP datagram to the echo server at ``to`` came back."""
        return bool(self.ask("echo", to, tries=tries)["echoed"])

    def knock(self, to: Address) -> None:
        """One datagram to ``to``, no answer expected (an unsolicited knock)."""
        self.ask("send", to)

    def tcp(self, to: Address) -> dict[str, Any]:
        return self.ask("tcp", to)

    def unsolicited(self) -> list[Address]:
        """Sources of datagrams this socket got that were not answers to its requests."""
        return [(a[0], int(a[1])) for a in self.ask("received")["received"]]


def ice_command(host: Host, stun: Address, *, controlling: bool, timeout: float) -> list[str]:
    role = ["--controlling"] if controlling else []
    return host.python(
        "-m", "tests.nat.ice_peer", "--stun", f"{stun[0]}:{stun[1]}", "--timeout", str(timeout),
        *role,
    )  # fmt: skip


def connect_ice_pair(
    a: Host, b: Host, stun: Address, *, timeout: float = 20.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run aioice in ``a`` (controlling) and ``b``, swap their offers, return both results.

    Gathering takes up to ~5 s when STUN is unreachable (aioice's fixed wait), checks are
    bounded by ``timeout``; each wait here adds a margin for a loaded machine.
    """
    peer_a = JsonLinesProcess(a, ice_command(a, stun, controlling=True, timeout=timeout))
    peer_b = JsonLinesProcess(b, ice_command(b, stun, controlling=False, timeout=timeout))
    offer_a, offer_b = peer_a.next_line(timeout=40), peer_b.next_line(timeout=40)
    peer_a.write_line(offer_b)
    peer_b.write_line(offer_a)
    return peer_a.next_line(timeout=timeout + 30), peer_b.next_line(timeout=timeout + 30)
