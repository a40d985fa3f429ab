"""A real supernode inside the lab's server namespace, for P2P tests.

Each namespace has its own ports, so the well-known ones are used (gRPC 7700, STUN 3478)
and metrics stay on the namespace's own loopback. The process is owned by the lab: it is
killed, with everything else, when the lab closes.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.nat.lab import Host

GRPC_PORT = 7700
STUN_PORT = 3478
_READY = re.compile(r"supernode ready (\{.*\})")


@dataclass
class LabSupernode:
    """A running ``supernode serve`` in the server namespace.

    ``grpc_target`` ("198.18.0.1:7700") and ``stun_address`` are reachable from every lab
    client; ``log`` holds its stderr lines, for assertion messages.
    """

    process: subprocess.Popen[str]
    grpc_target: str
    stun_address: tuple[str, int]
    log: list[str] = field(default_factory=list)


def start_supernode(
    server: Host, data_dir: Path, *args: str, timeout: float = 60.0, lifetime: float | None = None
) -> LabSupernode:
    """Start a supernode on ``server`` and wait for its ready line; ``args`` are extra flags."""
    command = server.python(
        "-m", "supernode.cli", "serve", "--data-dir", str(data_dir),
        "--listen", f"{server.address}:{GRPC_PORT}", "--metrics-listen", "127.0.0.1:0",
        "--stun-listen", f"{server.address}:{STUN_PORT}",
        # Plaintext on the lab's private network (namespaces on this host), intended.
        "--tls-public-plaintext", *args,
    )  # fmt: skip
    process = server.popen(
        command,
        lifetime=lifetime,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    ready: dict[str, str] = {}
    seen = threading.Event()

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            match = _READY.search(line)
            if match:
                ready.update(json.loads(match.group(1)))
                seen.set()
        seen.set()  # exited

    threading.Thread(target=read_log, daemon=True).start()
    if not seen.wait(timeout) or not ready:
        raise AssertionError(
            f"supernode in {server.ns} not ready within {timeout} s:\n{''.join(log)}"
        )
    host, port = str(ready["stun"]).rsplit(":", 1)
    return LabSupernode(process, str(ready["grpc"]), (host, int(port)), log)
