"""What the NAT lab needs from the machine, installed on demand, checked loudly.

The lab drives the kernel through ``ip`` (iproute2), ``iptables`` / ``iptables-restore``
(Debian 12's iptables speaks nf_tables underneath, which is fine) and coreutils' ``timeout``.
A fresh machine or CI may lack iptables, so the project installs it itself with apt-get
rather than relying on whatever a developer installed by hand. Anything that cannot be
provided (no root, no apt-get, a kernel that refuses namespaces or NAT) raises
:class:`LabUnavailable` with the reason: the NAT tests then fail, never skip, because a
silently skipped NAT suite would claim P2P coverage it does not have.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

# tool -> Debian package that ships it
TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "timeout": "coreutils",
}

# Root's usual PATH may be trimmed in CI; the tools live in sbin.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)


class LabUnavailable(RuntimeError):
    """The machine cannot host the NAT lab; the message says why and what was tried."""


def tool(name: str) -> str:
    """Absolute path of a lab tool; raises when it is not installed."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise LabUnavailable(f"{name} not found (Debian package {TOOLS.get(name, name)})")
    return path


def missing_packages() -> list[str]:
    """Debian packages whose tools are absent, sorted and without duplicates."""
    return sorted(
        {pkg for name, pkg in TOOLS.items() if shutil.which(name, path=_SEARCH_PATH) is None}
    )


def _apt_get(*args: str, timeout: float) -> None:
    apt = shutil.which("apt-get", path=_SEARCH_PATH)
    if apt is None:
        raise LabUnavailable(f"cannot install {args[-1]}: apt-get not found")
    command = [apt, "-o", "DPkg::Lock::Timeout=120", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabUnavailable(f"{' '.join(command)} timed out after {timeout} s") from exc
    if result.returncode != 0:
        raise LabUnavailable(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )


def ensure_tools() -> None:
    """Install iproute2 / iptables / coreutils when any of their tools is missing."""
    if os.geteuid() != 0:
        raise LabUnavailable("the NAT lab needs root (network namespaces, iptables)")
    packages = missing_packages()
    if not packages:
        return
    _apt_get("update", timeout=300)
    _apt_get("install", "-y", "--no-install-recommends", *packages, timeout=600)
    still_missing = missing_packages()
    if still_missing:
        raise LabUnavailable(f"installed {packages} but still missing {still_missing}")


def check_kernel() -> None:
    """Prove the kernel gives us what the lab uses, in a throwaway namespace.

    Namespaces, veth, bridges, MASQUERADE with ``--random-fully`` and the conntrack match
    are each a separate kernel feature (modules, nf_tables compat); testing them once here
    turns a confusing mid-test failure into one clear message.
    """
    ip, restore = tool("ip"), tool("iptables-restore")
    ns = f"snlab-probe-{uuid.uuid4().hex[:8]}"
    rules = (
        "*nat\n-A POSTROUTING -o wan -j MASQUERADE --random-fully\nCOMMIT\n"
        "*filter\n-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A INPUT -i wan -j DROP\nCOMMIT\n"
    )
    steps: list[tuple[list[str], str | None]] = [
        ([ip, "netns", "add", ns], None),
        ([ip, "-n", ns, "link", "add", "br0", "type", "bridge"], None),
        ([ip, "-n", ns, "link", "add", "wan", "type", "veth", "peer", "name", "p0"], None),
        ([ip, "-n", ns, "link", "set", "p0", "master", "br0"], None),
        ([ip, "netns", "exec", ns, restore], rules),
    ]
    try:
        for command, stdin in steps:
            result = subprocess.run(
                command, input=stdin, capture_output=True, text=True, timeout=30, check=False
            )
            if result.returncode != 0:
                raise LabUnavailable(
                    f"kernel refused {' '.join(command)} (exit {result.returncode}): "
                    f"{result.stderr.strip()}"
                )
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True, timeout=30, check=False)


def ensure_lab_ready() -> None:
    """Everything the session fixture needs: tools installed, kernel features present."""
    ensure_tools()
    check_kernel()
