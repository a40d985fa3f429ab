"""Install the Debian packages our tooling runs (etcd for a cluster, baselines for benchmarks).

A fresh CI machine runs as root with none of them installed, and ``supernode dev-cluster``,
the cluster tests and the benchmarks each start their own private servers; so the project's
own code installs the package (never a manual step) and stops whatever instance the package's
maintainer scripts start, since ours run on free loopback ports with throwaway data.

Blocking (apt can take a minute): async callers go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


class PackageError(RuntimeError):
    """A Debian package could not be installed (the message says why and what to do)."""


@dataclass(frozen=True)
class DebianPackage:
    """A package, the executable it provides and the service its install may start."""

    name: str  # Debian package name
    binary: str  # executable it installs (looked up on PATH)
    # The init script / systemd unit Debian may start on install; None for a package that
    # starts none (a client tool), so no unit is disabled on its behalf.
    service: str | None


ETCD_PACKAGE = DebianPackage("etcd-server", "etcd", "etcd")
# The native HTTP/2 load generator the benchmarks drive unary gRPC methods with
# (benchmarks.native). A client: its install starts nothing.
H2LOAD_PACKAGE = DebianPackage("nghttp2-client", "h2load", None)
# Debian's RFC 3489 STUN client (stund's), which the STUN responder's tests run against it.
STUN_CLIENT_PACKAGE = DebianPackage("stun-client", "stun", None)
# Node.js and npm for the interop client written in JavaScript (interop/node). Clients:
# their install starts nothing.
NODE_PACKAGE = DebianPackage("nodejs", "node", None)
NPM_PACKAGE = DebianPackage("npm", "npm", None)
# systemd-analyze, which lints the systemd unit in deploy/ (its install starts nothing here:
# the tests only run `systemd-analyze verify`).
SYSTEMD_PACKAGE = DebianPackage("systemd", "systemd-analyze", None)
# Prometheus, whose tests scrape a real node and check our rules and dashboard queries
# (tests/integration/test_prometheus.py); the package also ships ``promtool``.
PROMETHEUS_PACKAGE = DebianPackage("prometheus", "prometheus", "prometheus")
PROMTOOL = "promtool"

# Another apt/dpkg run (a parallel job, unattended upgrades) holds the lock: wait, not fail.
_APT_LOCK_TIMEOUT_S = 600
_apt_lock = threading.Lock()
_APT_FILE_LOCK = Path(tempfile.gettempdir()) / "supernode-apt.lock"
_apt_updated = False
_TERMINATE_GRACE_S = 10.0


def apt_commands(package: str, *, update: bool) -> list[list[str]]:
    """The apt-get invocations that install ``package`` (with an index refresh first)."""
    options = ["-o", f"DPkg::Lock::Timeout={_APT_LOCK_TIMEOUT_S}", "-q"]
    commands = [["apt-get", *options, "update"]] if update else []
    commands.append(["apt-get", *options, "install", "-y", "--no-install-recommends", package])
    return commands


def ensure_installed(package: DebianPackage) -> str:
    """Return the path of ``package.binary``, installing the Debian package if it is missing.

    Installs are serialized across threads and processes (a file lock), so a second installer
    finds the binary and returns instead of sweeping up a server the first one has since
    started.
    """
    found = shutil.which(package.binary)
    if found:
        return found
    with _apt_lock, open(_APT_FILE_LOCK, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        return shutil.which(package.binary) or _install(package)


def _install(package: DebianPackage) -> str:
    """apt-get the package (refreshing the index once per process: a fresh machine has none
    and a stale one 404s), then stop any server instance its install started."""
    global _apt_updated
    if os.geteuid() != 0:
        raise PackageError(
            f"{package.binary!r} is not installed and installing Debian package "
            f"{package.name!r} needs root; run as root or `apt-get install {package.name}`"
        )
    before = all_pids()
    for command in apt_commands(package.name, update=not _apt_updated):
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            raise PackageError(
                f"{' '.join(command)} failed with exit code {result.returncode}:\n{tail}"
            )
        if command[-1] == "update":
            _apt_updated = True
    found = shutil.which(package.binary)
    if not found:
        raise PackageError(f"installed {package.name!r} but {package.binary!r} is not on PATH")
    _stop_packaged_instance(package, found, before)
    return found


def _stop_packaged_instance(package: DebianPackage, binary: str, before: set[int]) -> None:
    """Stop a server the package's maintainer scripts may just have started.

    Ours run on other ports, but a stray instance would still take CPU and memory (and, for
    etcd, a benchmark's measurements or a test's port 2379). On systemd hosts the unit is also
    disabled so it does not return on boot.

    A package with no service (a client tool such as h2load) starts nothing, so nothing is
    stopped: a process of its binary that appeared meanwhile is a caller's own run (another
    process finds the binary on PATH as soon as dpkg unpacks it, before our lock is free).
    """
    if package.service is None:
        return
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(
            ["systemctl", "disable", "--now", package.service],
            capture_output=True,
            check=False,
        )
    stop_new_processes(binary, before)


def stop_new_processes(binary: str, before: set[int]) -> list[int]:
    """Terminate processes running ``binary`` whose PID is not in ``before``; return them.

    Only what appeared since ``before`` was taken (our install) is touched, never an instance
    someone else was already running.
    """
    exe = os.path.realpath(binary)
    stopped = []
    for pid in sorted(all_pids() - before):
        try:
            running = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue  # gone, or a kernel thread
        if running == exe:
            terminate_pid(pid)
            stopped.append(pid)
    return stopped


def all_pids() -> set[int]:
    """Every process ID on the machine right now (from ``/proc``)."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has released everything)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def terminate_pid(pid: int, grace: float = _TERMINATE_GRACE_S) -> None:
    """SIGTERM ``pid`` (not necessarily our child), then SIGKILL if still alive after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
