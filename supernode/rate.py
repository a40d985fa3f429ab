"""Rate limits per account and per source address for every public call that costs work.

Load shedding (``supernode.overload``) protects the node from everyone at once; these limits
protect it, and its users, from one caller: one address, or one account however many
sessions it logs in (logging in again used to reset the per-session search limit, and 6,494
of 6,495 discoverable accounts were scraped in 3.3 s). Each public method spends one
:class:`Budget`; a budget has a token bucket per key kind:

* **source**: the client's IP address (IPv6: its /64, what one subscriber gets), read by
  ``supernode.rpc.source`` (through a worker, the address the worker saw);
* **account**: the caller's handle once logged in, or the handle it logs in as; every
  session of an account shares it;
* **session**: kept where it was before (search and offers, ``Limits``), one device's share.

A refused call ends at once with RESOURCE_EXHAUSTED, a message that names the limit, and a
retry hint (``RetryLater``). Failed logins have their own, slower buckets that lock out a
handle and a source for a while (:class:`LoginFailures`).

In a cluster every node enforces its share, 1/N of each limit for N live nodes
(:meth:`RateLimiter.share_among`): an attacker who spreads over every node gets the
configured limit in total, never N times it; a client that keeps to one node gets 1/N
(docs/cluster.md explains the choice).

Pure: the clock is injected, and refusals are counted through a callback.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from supernode.errors import RetryLater
from supernode.ratelimit import TokenBuckets


class Budget(enum.Enum):
    """What a call spends. A budget's settings are ``<budget>_per_<kind>_per_second`` and
    ``<budget>_per_<kind>_burst``."""

    CREATE_ACCOUNT = "create_account"  # CreateAccount: no login, per source only
    LOGIN = "login"  # GetChallenge and Login (a signature check), per handle and source
    GET_ACCOUNT = "get_account"  # GetAccount: no login, per source only
    LOOKUP = "lookup"  # handles looked up: Lookup 1, LookupMany one per distinct handle
    SEARCH = "search"
    WRITE = "write"  # RegisterDevice, UnregisterDevice: signature check and replication
    STREAM_OPEN = "stream_open"  # Watch (a snapshot), Listen
    CONNECT = "connect"  # offers
    RELAY = "relay"  # relay joins


class KeyKind(enum.Enum):
    SOURCE = "source"
    ACCOUNT = "account"


_KIND_TEXT = {KeyKind.SOURCE: "source address", KeyKind.ACCOUNT: "account"}

METHOD_BUDGET: dict[str, Budget] = {
    "CreateAccount": Budget.CREATE_ACCOUNT,
    "GetChallenge": Budget.LOGIN,
    "Login": Budget.LOGIN,
    "Logout": Budget.LOGIN,
    "RevokeSessions": Budget.LOGIN,
    "GetAccount": Budget.GET_ACCOUNT,
    "GetPrivacy": Budget.GET_ACCOUNT,
    "SetPrivacy": Budget.WRITE,
    "RotateKey": Budget.WRITE,
    "Lookup": Budget.LOOKUP,
    "LookupMany": Budget.LOOKUP,
    "Search": Budget.SEARCH,
    "RegisterDevice": Budget.WRITE,
    "UnregisterDevice": Budget.WRITE,
    "KeepAlive": Budget.WRITE,
    "Watch": Budget.STREAM_OPEN,
    "Listen": Budget.STREAM_OPEN,
    "Connect": Budget.CONNECT,
    "Relay": Budget.RELAY,
}


@dataclass(frozen=True)
class RateSettings:
    """Rate limits (config section ``rate``: ``--rate-lookup-per-account-per-second``,
    ``SUPERNODE_RATE_ENABLED`` and so on). Rates are per second, bursts in calls (handles
    for ``lookup``); 0 as a rate turns that bucket off. Sized for a real client with room
    to spare (README "Rate limits" gives the why of each): a phone logs in a few times an
    hour, renews its device every few minutes, looks up its contacts (hundreds at once)
    and a few users a minute, searches as its user types. Per-source limits are several
    times the per-account ones: many users may share one address behind a NAT.
    """

    # Off: no bucket at all (the test suite's nodes, benchmarks; never a public node).
    enabled: bool = True
    # Sources are keyed by IPv4 address and by this prefix of an IPv6 address (a
    # subscriber usually gets a /64: keying by the full address would let one attacker
    # draw 2**64 fresh buckets).
    ipv6_prefix_bits: int = 64
    # Keys remembered per bucket table (least recently seen forgotten; ~200 B each).
    max_keys: int = 50_000
    # The caller's own accounts: 12 per minute from one address after a burst of 20.
    create_account_per_source_per_second: float = 0.2
    create_account_per_source_burst: int = 20
    # GetChallenge and Login together (two calls per login).
    login_per_account_per_second: float = 1.0
    login_per_account_burst: int = 30
    login_per_source_per_second: float = 10.0
    login_per_source_burst: int = 100
    # Failed logins (a bad signature or challenge): lockout once the burst is spent; each
    # failure beyond it pushes the lockout further (down to a burst's worth of debt).
    failed_login_per_account_per_second: float = 0.2
    failed_login_per_account_burst: int = 20
    failed_login_per_source_per_second: float = 0.1
    failed_login_per_source_burst: int = 10
    get_account_per_source_per_second: float = 50.0
    get_account_per_source_burst: int = 500
    # Handles looked up (Lookup: 1, LookupMany: one per distinct handle). The burst holds
    # a contact list fetched at start (max_lookup_many is 1,000).
    lookup_per_account_per_second: float = 50.0
    lookup_per_account_burst: int = 2000
    lookup_per_source_per_second: float = 500.0
    lookup_per_source_burst: int = 10_000
    # Search answers up to search_max_results accounts each: scraping is what is limited.
    search_per_account_per_second: float = 0.5
    search_per_account_burst: int = 20
    search_per_source_per_second: float = 2.0
    search_per_source_burst: int = 60
    write_per_account_per_second: float = 1.0
    write_per_account_burst: int = 30
    write_per_source_per_second: float = 10.0
    write_per_source_burst: int = 300
    stream_open_per_account_per_second: float = 1.0
    stream_open_per_account_burst: int = 30
    stream_open_per_source_per_second: float = 10.0
    stream_open_per_source_burst: int = 300
    connect_per_account_per_second: float = 5.0
    connect_per_account_burst: int = 50
    connect_per_source_per_second: float = 20.0
    connect_per_source_burst: int = 200
    relay_per_account_per_second: float = 1.0
    relay_per_account_burst: int = 20
    relay_per_source_per_second: float = 10.0
    relay_per_source_burst: int = 200

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_per_second", "_burst")) and value < 0:
                raise ValueError(f"rate.{f.name}: {value}, must be >= 0 (0: off)")
        if not 8 <= self.ipv6_prefix_bits <= 128:
            raise ValueError(f"rate.ipv6_prefix_bits: {self.ipv6_prefix_bits}, must be 8-128")
        if self.max_keys < 1:
            raise ValueError(f"rate.max_keys: {self.max_keys}, at least 1")

    def limit(self, name: str, kind: KeyKind) -> tuple[float, int] | None:
        """(rate, burst) of ``name`` (a budget, or ``failed_login``) for ``kind``, or None."""
        rate = getattr(self, f"{name}_per_{kind.value}_per_second", 0.0)
        burst = getattr(self, f"{name}_per_{kind.value}_burst", 0)
        return (rate, burst) if rate > 0 and burst > 0 else None


class RateLimited(RetryLater):
    """A caller went over one of its rate limits; the same call passes after the hint."""


CountRefusal = Callable[[str, str], None]  # (method, key kind)


def _hint_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Table:
    """One key kind's buckets of one budget."""

    def __init__(self, kind: KeyKind, buckets: TokenBuckets) -> None:
        self.kind = kind
        self.buckets = buckets

    def refusal(self, method: str, what: str, key: object, cost: float) -> RateLimited:
        seconds = self.buckets.retry_after(key, cost)
        hint = _hint_ms(seconds)
        return RateLimited(
            f"{method}: {what} limit of this {_KIND_TEXT[self.kind]} reached "
            f"({self.buckets.rate:g}/s, burst {self.buckets.burst:g}); "
            f"retry in {hint / 1000:.1f} s",
            hint,
            key=self.kind.value,
        )


class Gate:
    """The limits one method is held to, bound once at start-up: :meth:`check` is a
    bucket per key kind and nothing else."""

    def __init__(
        self,
        method: str,
        budget: Budget,
        source: _Table | None,
        account: _Table | None,
        count: CountRefusal,
    ) -> None:
        self.method = method
        self._what = "rate" if budget is not Budget.LOOKUP else "handles-per-second"
        self._source = source
        self._account = account
        self._count = count
        self.active = source is not None or account is not None

    def check(self, source: str, account: str | None = None, cost: float = 1.0) -> None:
        """Spend ``cost`` from the source's and the account's buckets, or raise
        :class:`RateLimited` (the buckets checked before the refusing one keep the spend:
        a refused caller pays for having asked)."""
        table = self._source
        if table is not None and not table.buckets.allow(source, cost):
            self._count(self.method, table.kind.value)
            raise table.refusal(self.method, self._what, source, cost)
        table = self._account
        if table is not None and account is not None and not table.buckets.allow(account, cost):
            self._count(self.method, table.kind.value)
            raise table.refusal(self.method, self._what, account, cost)


class LoginFailures:
    """Failed logins per handle and per source: checked before a login's signature is
    verified, charged after it fails. Once a bucket is spent the handle (or the source) is
    locked out, and then gets one attempt per refill (``failed_login_*_per_second``).

    Locking a handle out is also a way to deny its owner logins: the per-source bucket is
    far tighter, so keeping a handle locked takes many addresses (README "Rate limits")."""

    def __init__(self, source: _Table | None, account: _Table | None, count: CountRefusal):
        self._tables = [t for t in (source, account) if t is not None]
        self._count = count

    def check(self, source: str, handle: str) -> None:
        for table in self._tables:
            key = source if table.kind is KeyKind.SOURCE else handle
            if not table.buckets.has(key):
                self._count("Login", f"failed_login_{table.kind.value}")
                raise table.refusal("Login", "failed-login", key, 1.0)

    def failed(self, source: str, handle: str) -> None:
        for table in self._tables:
            table.buckets.spend(source if table.kind is KeyKind.SOURCE else handle)


class RateLimiter:
    """Every bucket table of one process, and the gates that use them."""

    def __init__(
        self,
        settings: RateSettings,
        *,
        clock: Callable[[], float],
        count_refusal: CountRefusal = lambda method, kind: None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._count = count_refusal
        self.count_refusal = count_refusal  # for the per-session limits kept elsewhere
        self._buckets: list[TokenBuckets] = []
        self._tables: dict[tuple[str, KeyKind], _Table | None] = {}
        self.share = 1.0
        self.login_failures = LoginFailures(
            self._table("failed_login", KeyKind.SOURCE),
            self._table("failed_login", KeyKind.ACCOUNT),
            count_refusal,
        )

    def _table(self, name: str, kind: KeyKind) -> _Table | None:
        if (name, kind) not in self._tables:
            limit = self.settings.limit(name, kind) if self.settings.enabled else None
            table = None
            if limit is not None:
                rate, burst = limit
                buckets = TokenBuckets(
                    rate=rate, burst=burst, clock=self._clock, max_keys=self.settings.max_keys
                )
                buckets.scale(self.share)
                self._buckets.append(buckets)
                table = _Table(kind, buckets)
            self._tables[(name, kind)] = table
        return self._tables[(name, kind)]

    def gate(self, method: str) -> Gate:
        """The gate of public ``method`` (methods of one budget share its buckets)."""
        budget = METHOD_BUDGET[method]
        return Gate(
            method,
            budget,
            self._table(budget.value, KeyKind.SOURCE),
            self._table(budget.value, KeyKind.ACCOUNT),
            self._count,
        )

    def share_among(self, nodes: int) -> None:
        """Enforce 1/``nodes`` of every limit here: the cluster's N live nodes together
        hold a caller to the configured limit. Cheap when nothing changed."""
        share = 1.0 / max(1, nodes)
        if share != self.share:
            self.share = share
            for buckets in self._buckets:
                buckets.scale(share)
