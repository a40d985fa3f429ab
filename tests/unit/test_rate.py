"""Rate limits (supernode.rate), token buckets, source keys and the retry hint, pure."""

import pytest

from client_sdk.errors import Overloaded, RateLimited, error_from_rpc
from client_sdk.protocol.pushback import pushback_ms
from client_sdk.protocol.refusals import error_reason
from client_sdk.retry import waitable
from supernode.overload import Overloaded as ServerOverloaded
from supernode.rate import METHOD_BUDGET, Budget, KeyKind, RateLimiter, RateSettings
from supernode.rate import RateLimited as ServerRateLimited
from supernode.ratelimit import TokenBuckets
from supernode.rpc.handlers import refusal_status
from supernode.rpc.source import Sources


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **settings: object) -> tuple[RateLimiter, list[tuple[str, str]]]:
    refused: list[tuple[str, str]] = []
    made = RateLimiter(
        RateSettings(**settings),  # type: ignore[arg-type]
        clock=clock,
        count_refusal=lambda method, kind: refused.append((method, kind)),
    )
    return made, refused


def test_every_budget_is_spent_by_a_method_and_has_settings() -> None:
    assert set(METHOD_BUDGET.values()) == set(Budget)
    settings = RateSettings()
    for budget in Budget:
        rates = [settings.limit(budget.value, kind) for kind in KeyKind]
        assert any(rates), budget


def test_lookups_count_handles_per_account_and_per_source() -> None:
    clock = Clock()
    rate, refused = limiter(
        clock,
        lookup_per_account_per_second=10,
        lookup_per_account_burst=100,
        lookup_per_source_per_second=1000,
        lookup_per_source_burst=1000,
    )
    gate = rate.gate("LookupMany")
    gate.check("1.2.3.4", "alice", 60)
    with pytest.raises(ServerRateLimited, match=r"LookupMany: .*account.*retry in 2\.0 s") as e:
        gate.check("1.2.3.4", "alice", 60)
    assert e.value.retry_after_ms == 2000 and e.value.about == {"key": "account"}
    assert refused == [("LookupMany", "account")]
    rate.gate("Lookup").check("1.2.3.4", "bob")  # another account: its own bucket
    clock.now += 2
    gate.check("1.2.3.4", "alice", 60)  # refilled


def test_logging_in_again_does_not_reset_the_account_limit() -> None:
    """The search scrape: each new session used to bring a full bucket."""
    clock = Clock()
    rate, _ = limiter(clock, search_per_account_burst=3, search_per_source_burst=1000)
    gate = rate.gate("Search")
    for _ in range(3):
        gate.check("10.0.0.1", "mallory")
    with pytest.raises(ServerRateLimited):
        gate.check("10.0.0.1", "mallory")


def test_many_accounts_from_one_source_hit_the_source_limit() -> None:
    clock = Clock()
    rate, refused = limiter(clock, search_per_source_burst=5)
    gate = rate.gate("Search")
    for n in range(5):
        gate.check("10.0.0.1", f"sock{n}")
    with pytest.raises(ServerRateLimited, match="source address"):
        gate.check("10.0.0.1", "sock9")
    assert refused == [("Search", "source")]
    gate.check("10.0.0.2", "sock9")


def test_a_cost_over_the_burst_passes_with_a_full_bucket_only() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=100, clock=clock)
    assert buckets.allow("k", 5000)  # takes the whole burst
    assert not buckets.allow("k", 5000)
    assert buckets.retry_after("k", 5000) == pytest.approx(10.0)


def test_failed_logins_lock_out_the_handle_and_the_source() -> None:
    clock = Clock()
    rate, refused = limiter(
        clock,
        failed_login_per_account_per_second=0.5,
        failed_login_per_account_burst=3,
        failed_login_per_source_per_second=1,
        failed_login_per_source_burst=100,
    )
    failures = rate.login_failures
    for _ in range(3):
        failures.check("1.1.1.1", "victim")
        failures.failed("1.1.1.1", "victim")
    with pytest.raises(ServerRateLimited, match="failed-login limit of this account"):
        failures.check("2.2.2.2", "victim")  # from anywhere: the handle is locked
    assert refused == [("Login", "failed_login_account")]
    failures.check("1.1.1.1", "someone-else")
    clock.now += 2  # one failure's worth refilled
    failures.check("2.2.2.2", "victim")


def test_a_cluster_node_enforces_its_share() -> None:
    clock = Clock()
    rate, _ = limiter(clock, create_account_per_source_burst=30)
    gate = rate.gate("CreateAccount")
    rate.share_among(3)
    for _ in range(10):
        gate.check("9.9.9.9")
    with pytest.raises(ServerRateLimited, match="burst 10"):
        gate.check("9.9.9.9")
    rate.share_among(1)
    clock.now += 5  # the full rate again: a token in 5 s, not 15
    gate.check("9.9.9.9")


def test_disabled_limits_have_no_buckets() -> None:
    rate, _ = limiter(Clock(), enabled=False)
    gate = rate.gate("Lookup")
    assert not gate.active
    for _ in range(10_000):
        gate.check("1.2.3.4", "alice", 1000)


def test_settings_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match=r"rate\.lookup_per_account_burst"):
        RateSettings(lookup_per_account_burst=-1)


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:203.0.113.7:51234", "203.0.113.7"),
        ("ipv6:[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2:bbbb::9]:1", "2001:db8:1:2::/64"),  # same subscriber
        ("ipv6:[::ffff:198.51.100.1]:9", "198.51.100.1"),  # dual-stack IPv4 client
        ("ipv6:[fe80::1%eth0]:9", "fe80::/64"),
    ],
)
def test_source_keys(peer: str, key: str) -> None:
    assert Sources(64).key(peer) == key


def test_retry_hint_round_trip_both_carriers() -> None:
    metadata = refusal_status(ServerRateLimited("Lookup: slow down", 1500, key="source"))[2]
    assert pushback_ms(metadata) == 1500
    assert error_reason(metadata) == "RATE_LIMITED"
    only_retry_info = [m for m in metadata if m[0] == "grpc-status-details-bin"]
    assert pushback_ms(only_retry_info) == 1500
    assert pushback_ms([("grpc-status-details-bin", b"\xff garbage")]) is None


def test_the_sdk_waits_for_short_rate_limit_hints_only() -> None:
    assert waitable(2000, "RATE_LIMITED", 30.0) == 2000
    assert waitable(300_000, "RATE_LIMITED", 30.0) is None  # a lockout: the app hears it
    assert waitable(300_000, "OVERLOADED", 30.0) == 300_000  # shedding: capped wait
    assert waitable(None, "RATE_LIMITED", 30.0) is None


class _Error:
    """The parts of grpc.aio.AioRpcError that error_from_rpc reads."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._metadata = metadata

    def code(self) -> object:
        import grpc

        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return "slow down"

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata


def test_sdk_errors_carry_the_hint() -> None:
    limited = error_from_rpc(_Error(refusal_status(ServerRateLimited("slow down", 2500))[2]))  # type: ignore[arg-type]
    assert type(limited) is RateLimited and limited.retry_after_seconds == 2.5
    shed = error_from_rpc(_Error(refusal_status(ServerOverloaded("slow down", 700))[2]))  # type: ignore[arg-type]
    assert type(shed) is Overloaded and shed.retry_after_seconds == 0.7
    final = error_from_rpc(_Error(()))  # type: ignore[arg-type]
    assert type(final) is RateLimited and final.retry_after_seconds is None
