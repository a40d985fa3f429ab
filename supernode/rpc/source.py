"""Where a call comes from: the key of per-source rate limits (``supernode.rate``).

From ``context.peer()``: an IPv4 address, or an IPv6 address cut to its prefix (a
subscriber usually holds a whole /64). A call a worker forwarded arrives on the primary's
private unix socket: its peer is the one the worker saw, in the ``supernode-peer`` header,
which the worker sets itself after dropping any copy the client sent
(``supernode.workers.proxy``), and which is believed only on a unix socket (the public
port is TCP, so a client cannot claim an address by sending the header).
"""

from __future__ import annotations

import ipaddress
import time

import grpc

from supernode.rate import Gate, RateLimiter, RateSettings

PEER_METADATA = "supernode-peer"
_CACHE_LIMIT = 10_000


class Sources:
    """Turns a call's peer into its source key; IPv6 prefixes are cached (parsing one
    costs microseconds, and the lookup path calls this for every call)."""

    def __init__(self, ipv6_prefix_bits: int = 64) -> None:
        self._bits = ipv6_prefix_bits
        self._ipv6: dict[str, str] = {}

    def of(self, context: grpc.aio.ServicerContext) -> str:
        peer: str = context.peer() or ""
        if peer.startswith("unix"):
            peer = "local"
            for key, value in context.invocation_metadata() or ():
                if key == PEER_METADATA:
                    peer = value.decode() if isinstance(value, bytes) else value
        return self.key(peer)

    def key(self, peer: str) -> str:
        """``ipv4:1.2.3.4:5678`` -> ``1.2.3.4``; ``ipv6:[2001:db8::1]:5678`` ->
        ``2001:db8::/64``; anything else as it is."""
        if peer.startswith("ipv4:"):
            return peer[5 : peer.rfind(":")]
        if peer.startswith("ipv6:"):
            return self._prefix(peer[5 : peer.rfind(":")].strip("[]"))
        return peer

    def _prefix(self, host: str) -> str:
        key = self._ipv6.get(host)
        if key is None:
            try:
                address = ipaddress.IPv6Address(host.partition("%")[0])
                mapped = address.ipv4_mapped  # a dual-stack socket's IPv4 client
                key = (
                    str(mapped)
                    if mapped
                    else str(ipaddress.IPv6Network(f"{address}/{self._bits}", strict=False))
                )
            except ValueError:
                key = host
            if len(self._ipv6) >= _CACHE_LIMIT:
                self._ipv6.clear()
            self._ipv6[host] = key
        return key


class CallGate:
    """A method's rate limits (``supernode.rate.Gate``) at the gRPC edge: finds the
    caller's source, then checks. A method with no limit costs nothing."""

    __slots__ = ("_active", "_gate", "_sources")

    def __init__(self, gate: Gate, sources: Sources) -> None:
        self._gate = gate
        self._sources = sources
        self._active = gate.active

    def check(
        self, context: grpc.aio.ServicerContext, account: str | None = None, cost: float = 1.0
    ) -> str:
        """Spend ``cost`` for the caller (and ``account``) or raise ``RateLimited``;
        returns the caller's source key."""
        if not self._active:
            return ""
        source = self._sources.of(context)
        self._gate.check(source, account, cost)
        return source


class RateGates:
    """The rate limiter of one process and the source reader its gates share."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.sources = Sources(limiter.settings.ipv6_prefix_bits)

    @classmethod
    def off(cls) -> RateGates:
        """No limits at all (an API built without them)."""
        return cls(RateLimiter(RateSettings(enabled=False), clock=time.monotonic))

    def source(self, context: grpc.aio.ServicerContext) -> str:
        return self.sources.of(context)

    def gate(self, method: str) -> CallGate:
        return CallGate(self.limiter.gate(method), self.sources)
