"""Node.js and the interop client's npm dependencies, installed by the project itself.

A fresh CI machine may have neither ``node`` nor ``npm``: they come from Debian
(``supernode.debian``), and a machine where that fails fails the test loudly. The client's
packages (``interop/node/package-lock.json``, pinned) are installed with ``npm ci`` once:
a stamp in ``node_modules`` records the digest of the lock they were installed from, so a
later session skips npm entirely until the lock changes. Installs are serialized across
processes with a file lock, as Debian installs are.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from supernode.debian import NODE_PACKAGE, NPM_PACKAGE, ensure_installed

REPOSITORY = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPOSITORY / "interop" / "node"
LOCK_FILE = "package-lock.json"
STAMP = Path("node_modules") / ".supernode-lock-sha256"
NPM_CI_TIMEOUT_S = 600
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "supernode-npm.lock"


class NpmError(RuntimeError):
    """``npm ci`` failed (the message holds npm's own words)."""


@dataclass(frozen=True)
class NodeClient:
    """The Node.js binary and the interop client's script, its dependencies installed."""

    node: str
    script: Path


def lock_digest(package_dir: Path) -> str:
    """SHA-256 of the package's lock file: what its ``node_modules`` must be installed from."""
    return hashlib.sha256((package_dir / LOCK_FILE).read_bytes()).hexdigest()


def is_installed(package_dir: Path) -> bool:
    """True when ``node_modules`` was installed, completely, from the current lock file."""
    stamp = package_dir / STAMP
    return stamp.is_file() and stamp.read_text().strip() == lock_digest(package_dir)


def npm_ci_command(npm: str) -> list[str]:
    """``npm ci``: exactly the lock's packages, with no install scripts (none is needed)."""
    return [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]


def install(package_dir: Path, npm: str) -> None:
    """``npm ci`` in ``package_dir`` unless its stamp matches the lock; then write the stamp."""
    with open(_INSTALL_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed(package_dir):
            return
        result = subprocess.run(
            npm_ci_command(npm),
            cwd=package_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            raise NpmError(f"npm ci in {package_dir} failed ({result.returncode}):\n{tail}")
        (package_dir / STAMP).write_text(lock_digest(package_dir) + "\n")


def ensure_node_client(package_dir: Path = CLIENT_DIR) -> NodeClient:
    """Node.js and npm (from Debian when missing), and the client's packages installed."""
    node = ensure_installed(NODE_PACKAGE)
    install(package_dir, ensure_installed(NPM_PACKAGE))
    return NodeClient(node, package_dir / "client.mjs")
