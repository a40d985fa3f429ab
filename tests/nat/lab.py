"""A small Internet in network namespaces, for peer-to-peer tests.

Topology (one lab; every name carries a per-run id, so labs never collide)::

    hub namespace: bridge br0  = the "Internet", 198.18.0.0/24
      ├── server          198.18.0.1        (runs the supernode: gRPC + STUN)
      ├── public client   198.18.0.N        (nat="none")
      └── router WAN      198.18.0.N ── router ── LAN 198.19.K.0/24 ── client 198.19.K.2

Only 198.18.0.0/15 (RFC 2544 benchmarking space) is used: never a real network. Public
hosts have no default route, so the private 198.19.x addresses are unreachable from the
"Internet", as private addresses are on the real one.

NAT kinds, as Linux conntrack provides them:

- ``"eim"``: ``MASQUERADE``, endpoint-independent mapping (one public port per local
  socket, whatever the destination; Linux keeps the source port when it is free) with
  address-and-port-dependent filtering. Hole punching works between two of these.
- ``"symmetric"``: ``MASQUERADE --random-fully``, a fresh random public port per
  destination. Hole punching between two of these fails; the relay must carry the call.
- ``block_udp=True``: the router drops every UDP packet the client sends (a firewall
  allowing only TCP), so STUN and ICE fail while TCP to the server (gRPC, the relay) works.
  Dropped on the router, not in the client's own OUTPUT chain: a local block makes
  ``sendto`` fail with EPERM, which no real firewall does.

Every router drops unsolicited inbound traffic (conntrack ESTABLISHED,RELATED accepted,
everything else from the WAN dropped, on INPUT and FORWARD). Without that, a Linux router
answers a peer's first ICE check itself and the conntrack entry it creates moves the
client's mapping to another port, so hole punching fails even where it should work.

Processes run as ``ip netns exec NS timeout -s KILL N cmd`` in their own session, so
each dies by itself after N seconds, and cleanup (``close``: on ``__exit__``, the pytest
fixture's finalizer, ``atexit`` and SIGTERM) kills them by process group and by the PIDs
``ip netns pids`` reports, then deletes the namespaces. Labs of crashed earlier runs are
swept when a new lab starts.

Use::

    def test_something(nat_lab: NatLab, tmp_path: Path) -> None:
        server = nat_lab.add_server()                       # 198.18.0.1
        node = start_supernode(server, tmp_path / "data")   # tests/nat/lab_supernode.py
        a = nat_lab.add_client("a", "eim")
        b = nat_lab.add_client("b", "symmetric")
        c = nat_lab.add_client("c", "eim", block_udp=True)
        peer = a.popen(a.python("-m", "my.peer", node.grpc_target), stdout=PIPE, text=True)
        print(a.run(["ip", "route"]).stdout)
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from tests.nat.requirements import tool

NatKind = Literal["none", "eim", "symmetric"]

PREFIX = "snlab"
PUBLIC_NET = "198.18.0"  # /24, the "Internet"
SERVER_ADDRESS = f"{PUBLIC_NET}.1"
LAN_NET = "198.19.{index}"  # /24 per NAT router
REPO_ROOT = Path(__file__).resolve().parents[2]
# A lab namespace whose owner is gone is swept only once it is this old, so a live run in
# another PID namespace that shares /run/netns (where our liveness check cannot see its
# owner) keeps its lab for longer than any test runs.
STALE_AFTER_SECONDS = 600.0
DEFAULT_LIFETIME = 120.0

_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_lab_numbers = itertools.count(1)
_open_labs: weakref.WeakSet[NatLab] = weakref.WeakSet()


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its output."""


def _process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def _sh(command: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> str:
    """Run a lab-building command in the root namespace; raise LabError on failure."""
    try:
        result = subprocess.run(
            list(command), input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(command)} timed out after {timeout} s") from exc
    if result.returncode != 0:
        raise LabError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def _kill_namespace(ns: str) -> None:
    """Kill every process inside ``ns`` by PID, then delete it. Never raises."""
    ip = tool("ip")
    with contextlib.suppress(Exception):
        pids = subprocess.run(
            [ip, "netns", "pids", ns], capture_output=True, text=True, timeout=30
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(Exception):
        subprocess.run([ip, "netns", "del", ns], capture_output=True, timeout=30)


def _owner_pattern(prefix: str) -> re.Pattern[str]:
    """Lab namespace names: prefix, owner PID, owner start time, lab number, host."""
    return re.compile(rf"^{re.escape(prefix)}-(\d+)-(\d+)-\d+-")


def lab_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of all namespaces any run of the lab created that still exist."""
    out = _sh([tool("ip"), "netns", "list"])
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [name for name in names if _owner_pattern(prefix).match(name)]


def sweep_stale_namespaces(prefix: str = PREFIX, now: float | None = None) -> list[str]:
    """Delete lab namespaces left by crashed runs: owner process gone and old enough."""
    now = time.time() if now is None else now
    swept = []
    for ns in lab_namespaces(prefix):
        match = _owner_pattern(prefix).match(ns)
        assert match is not None
        pid, started = int(match.group(1)), int(match.group(2))
        if _process_start_time(pid) == started:
            continue  # its owner is alive
        try:
            age = now - Path(f"/run/netns/{ns}").stat().st_mtime
        except OSError:
            continue
        if age > STALE_AFTER_SECONDS:
            _kill_namespace(ns)
            swept.append(ns)
    return swept


@dataclass(eq=False)
class Host:
    """One machine of the lab: a namespace with one interface (two for a router).

    ``address`` is what the host's own sockets bind and what its ICE host candidate shows;
    ``public_address`` is how the Internet sees it: the same for public hosts, the router's
    WAN address for clients behind NAT. ``router`` is the NAT router host, if any (run
    ``iptables -L -v`` or read ``/proc/net/nf_conntrack`` there when debugging).
    """

    lab: NatLab
    name: str
    ns: str
    address: str
    public_address: str
    nat: NatKind = "none"
    block_udp: bool = False
    router: Host | None = None

    def command(self, cmd: Sequence[str], lifetime: float) -> list[str]:
        """``cmd`` wrapped to run in this namespace and be SIGKILLed after ``lifetime`` s."""
        seconds = f"{max(1, round(lifetime))}"
        return [tool("ip"), "netns", "exec", self.ns, tool("timeout"), "-s", "KILL", seconds, *cmd]

    def run(
        self,
        cmd: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` here to completion (text mode, output captured).

        ``timeout`` bounds it inside the namespace (SIGKILL); with ``check`` a non-zero
        exit raises LabError with the output, which makes a failing test self-explaining.
        """
        result = subprocess.run(
            self.command(cmd, timeout),
            input=input,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=self.lab.env,
            start_new_session=True,
            timeout=timeout + 15,
        )
        if check and result.returncode != 0:
            raise LabError(
                f"[{self.name}] {' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def popen(
        self, cmd: Sequence[str], *, lifetime: float | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` here in the background; the lab kills it on close.

        ``kwargs`` go to :class:`subprocess.Popen` (``stdin=PIPE``, ``text=True``, ...);
        the process gets its own session so that its whole group can be killed, and dies
        by itself after ``lifetime`` seconds (default: the lab's) even if this test process
        is SIGKILLed.
        """
        kwargs.setdefault("cwd", REPO_ROOT)
        kwargs.setdefault("env", self.lab.env)
        command = self.command(cmd, self.lab.lifetime if lifetime is None else lifetime)
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.lab.processes.append(process)
        return process

    def drop_udp(self, dropped: bool = True) -> None:
        """Make this client's router drop every UDP packet through it, both ways, or stop.

        A network that turns UDP off mid-call: TCP (gRPC, the relay) still passes, and the
        router's NAT mappings stay (conntrack keeps them while packets keep arriving), so
        removing the rule restores the same direct path.
        """
        if self.router is None:
            raise LabError(f"{self.name} has no router: drop_udp needs a NATted client")
        action = "-I" if dropped else "-D"
        self.router.run([tool("iptables"), action, "FORWARD", "-p", "udp", "-j", "DROP"])

    def python(self, *args: str) -> list[str]:
        """A command running this test run's Python (the project venv) with ``args``."""
        return [sys.executable, *args]


class NatLab:
    """Builds and owns one lab; use as a context manager (or the ``nat_lab`` fixture).

    ``lifetime`` is the default bound, in seconds, on every process started in the lab
    (:meth:`Host.popen`): long enough for any test, short enough that a crashed run's
    processes do not linger.
    """

    def __init__(self, lifetime: float = DEFAULT_LIFETIME) -> None:
        self.lifetime = lifetime
        self.hosts: dict[str, Host] = {}
        self.processes: list[subprocess.Popen[Any]] = []
        self.namespaces: list[str] = []
        pid = os.getpid()
        self.run_id = f"{PREFIX}-{pid}-{_process_start_time(pid)}-{next(_lab_numbers)}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}
        self._hub = ""
        self._next_public = 2  # .1 is the server
        self._next_lan = 1
        self._bridge_ports = 0
        self._closed = False

    # lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NatLab:
        sweep_stale_namespaces()
        _open_labs.add(self)
        _install_sigterm_cleanup()
        try:
            self._hub = self._add_namespace("hub")
            _sh([tool("ip"), "-n", self._hub, "link", "add", "br0", "type", "bridge"])
            _sh([tool("ip"), "-n", self._hub, "link", "set", "br0", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process and delete every namespace of this lab. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        for ns in reversed(self.namespaces):
            _kill_namespace(ns)
        _open_labs.discard(self)

    # building --------------------------------------------------------------------------

    def add_server(self, name: str = "server") -> Host:
        """The public host at 198.18.0.1 where tests run the supernode."""
        return self._add_public(name, SERVER_ADDRESS)

    def add_client(self, name: str, nat: NatKind = "none", *, block_udp: bool = False) -> Host:
        """A client on the Internet directly (``"none"``) or behind its own NAT router."""
        if nat == "none":
            if block_udp:
                raise ValueError("block_udp needs a router: use nat='eim' or 'symmetric'")
            address = f"{PUBLIC_NET}.{self._next_public}"
            self._next_public += 1
            return self._add_public(name, address)
        if nat not in ("eim", "symmetric"):
            raise ValueError(f"unknown NAT kind {nat!r}")
        return self._add_natted(name, nat, block_udp)

    @property
    def server(self) -> Host:
        """The host made by :meth:`add_server`."""
        for host in self.hosts.values():
            if host.address == SERVER_ADDRESS:
                return host
        raise LabError("no server in this lab: call add_server() first")

    def _add_public(self, name: str, address: str) -> Host:
        self._check_name(name)
        ns = self._add_namespace(name)
        self._plug_into_hub(ns, "eth0", address)
        host = Host(self, name, ns, address, address)
        self.hosts[name] = host
        return host

    def _add_natted(self, name: str, nat: NatKind, block_udp: bool) -> Host:
        self._check_name(name)
        ip = tool("ip")
        wan = f"{PUBLIC_NET}.{self._next_public}"
        self._next_public += 1
        lan_net = LAN_NET.format(index=self._next_lan)
        self._next_lan += 1
        gateway, address = f"{lan_net}.1", f"{lan_net}.2"

        router_ns = self._add_namespace(f"{name}-nat", forwarding=True)
        client_ns = self._add_namespace(name)
        self._plug_into_hub(router_ns, "wan", wan)
        _sh([ip, "link", "add", "eth0", "netns", client_ns, "type", "veth",
             "peer", "name", "lan", "netns", router_ns])  # fmt: skip
        _sh([ip, "-n", router_ns, "-batch", "-"],
            stdin=f"address add {gateway}/24 dev lan\nlink set lan up\n")  # fmt: skip
        _sh([ip, "-n", client_ns, "-batch", "-"],
            stdin=f"address add {address}/24 dev eth0\nlink set eth0 up\n"
            f"route add default via {gateway}\n")  # fmt: skip
        _sh([ip, "netns", "exec", router_ns, tool("iptables-restore")],
            stdin=router_rules(nat, block_udp))  # fmt: skip

        router = Host(self, f"{name}-nat", router_ns, wan, wan)
        host = Host(self, name, client_ns, address, wan, nat, block_udp, router)
        self.hosts[name] = host
        return host

    def _check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"host name {name!r}: lowercase letters and digits, at most 12")
        if name in self.hosts:
            raise ValueError(f"host name {name!r} already used in this lab")

    def _add_namespace(self, suffix: str, *, forwarding: bool = False) -> str:
        """Create a namespace with explicit IP settings, whatever the host's are."""
        ns = f"{self.run_id}-{suffix}"
        _sh([tool("ip"), "netns", "add", ns])
        self.namespaces.append(ns)
        _sh([tool("ip"), "netns", "exec", ns, "sh", "-ec", _sysctl_script(forwarding)])
        _sh([tool("ip"), "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _plug_into_hub(self, ns: str, ifname: str, address: str) -> None:
        if not self._hub or self._closed:
            raise LabError("add hosts inside `with NatLab() as lab:` (the lab is not open)")
        ip = tool("ip")
        port = f"p{self._bridge_ports}"
        self._bridge_ports += 1
        _sh([ip, "link", "add", ifname, "netns", ns, "type", "veth",
             "peer", "name", port, "netns", self._hub])  # fmt: skip
        _sh([ip, "-n", self._hub, "link", "set", port, "master", "br0", "up"])
        _sh([ip, "-n", ns, "-batch", "-"],
            stdin=f"address add {address}/24 dev {ifname}\nlink set {ifname} up\n")  # fmt: skip


def router_rules(nat: NatKind, block_udp: bool) -> str:
    """The router's iptables-restore input: NAT out of ``wan``, unsolicited inbound dropped."""
    masquerade = "-A POSTROUTING -o wan -j MASQUERADE"
    if nat == "symmetric":
        masquerade += " --random-fully"
    block = "-A FORWARD -i lan -o wan -p udp -j DROP\n" if block_udp else ""
    return (
        "*nat\n"
        f"{masquerade}\n"
        "COMMIT\n"
        "*filter\n"
        "-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A INPUT -i wan -j DROP\n"
        f"{block}"
        "-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A FORWARD -i wan -o lan -j DROP\n"
        "COMMIT\n"
    )


def _sysctl_script(forwarding: bool) -> str:
    """Shell lines setting a new namespace's sysctls.

    New namespaces copy the host's IPv4 settings, so rp_filter and forwarding are set
    explicitly. IPv6 is switched off (link-local addresses and router solicitations are
    noise in ICE candidates and captures). Bridged traffic must not traverse iptables
    (br_netfilter is loaded on some hosts and applies per namespace); both are optional
    kernel features, hence the existence tests.
    """
    lines = [
        f"echo {1 if forwarding else 0} > /proc/sys/net/ipv4/ip_forward",
        "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter",
        "echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter",
        "if [ -d /proc/sys/net/ipv6 ]; then",
        "  echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
        "  echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        "fi",
        "if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then",
        "  echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def close_all_labs() -> None:
    """Close every lab still open in this process (atexit and SIGTERM)."""
    for lab in list(_open_labs):
        lab.close()


atexit.register(close_all_labs)


def _install_sigterm_cleanup() -> None:
    """On SIGTERM, close the labs, then die of SIGTERM as before.

    Only when nothing else handles SIGTERM and only from the main thread (a signal
    handler cannot be set elsewhere); otherwise atexit and the next run's sweep remain.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all_labs()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
