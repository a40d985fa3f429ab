"""The SDK and an overloaded supernode: the hint is read, honoured, capped, and spread."""

import random
from collections.abc import AsyncIterator

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.backoff import Backoff
from client_sdk.config import ClientConfig
from client_sdk.errors import Overloaded, RateLimited, error_from_rpc
from client_sdk.identity import Identity
from client_sdk.protocol.pushback import PUSHBACK_METADATA_KEY, pushback_metadata, pushback_ms
from client_sdk.retry import Action, StreamAction, after_failure, after_stream_failure
from client_sdk.session import Session
from client_sdk.timing import next_renewal_delay
from client_sdk.transport import DirectoryConnection

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TARGETS = ["127.0.0.1:1", "127.0.0.1:2"]


def shed(hint_ms: int | None) -> grpc.aio.AioRpcError:
    trailing = (
        grpc.aio.Metadata() if hint_ms is None else grpc.aio.Metadata(*pushback_metadata(hint_ms))
    )
    return grpc.aio.AioRpcError(EXHAUSTED, grpc.aio.Metadata(), trailing, "overloaded: busy")


# ------------------------------------------------------------------ the trailer


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), None),
        (None, None),
        (((PUSHBACK_METADATA_KEY, "250"),), 250),
        (((PUSHBACK_METADATA_KEY, b"0"),), 0),
        ((("other", "1"), (PUSHBACK_METADATA_KEY, "1500")), 1500),
        (((PUSHBACK_METADATA_KEY, "-1"),), None),  # gRPC: negative means do not retry
        (((PUSHBACK_METADATA_KEY, "soon"),), None),
        (((PUSHBACK_METADATA_KEY, "١٢"),), None),  # digits, but not ASCII ones
    ],
)
def test_the_pushback_trailer_is_read_as_grpc_defines_it(
    metadata: tuple[tuple[str, str | bytes], ...] | None, expected: int | None
) -> None:
    assert pushback_ms(metadata) == expected


def test_a_negative_hint_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        pushback_metadata(-5)


# ------------------------------------------------------------------ the rules


def test_resource_exhausted_with_a_hint_is_retried_without_it_is_final() -> None:
    rule = after_failure
    assert rule(EXHAUSTED, authenticated=True, relogged_in=False, pushback_ms=300) is Action.WAIT
    assert rule(EXHAUSTED, authenticated=True, relogged_in=False) is Action.FAIL
    # A hint on another status changes nothing: only a shed call carries meaning.
    assert (
        rule(grpc.StatusCode.INVALID_ARGUMENT, authenticated=True, relogged_in=False, pushback_ms=1)
        is Action.FAIL
    )
    assert (
        rule(grpc.StatusCode.UNAVAILABLE, authenticated=True, relogged_in=False, pushback_ms=1)
        is Action.FAILOVER
    )


def test_a_stream_shed_while_opening_waits_and_a_watch_limit_stays_final() -> None:
    rule = after_stream_failure
    assert rule(EXHAUSTED, received=False, relogged_in=False, pushback_ms=10) is StreamAction.WAIT
    assert rule(EXHAUSTED, received=False, relogged_in=False) is StreamAction.FAIL
    assert rule(EXHAUSTED, received=True, relogged_in=False) is StreamAction.RESUME


def test_an_overloaded_answer_maps_to_overloaded_with_its_hint() -> None:
    error = error_from_rpc(shed(1500))
    assert isinstance(error, Overloaded) and isinstance(error, RateLimited)
    assert error.retry_after_seconds == 1.5 and error.code == EXHAUSTED
    plain = error_from_rpc(shed(None))
    assert type(plain) is RateLimited


@given(
    hint_ms=st.integers(min_value=0, max_value=10**9),
    attempt=st.integers(min_value=0, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
    cap=st.floats(min_value=0.01, max_value=1000),
)
def test_the_wait_after_a_hint_is_at_least_the_hint_and_at_most_the_cap(
    hint_ms: int, attempt: int, seed: int, cap: float
) -> None:
    backoff = Backoff(pushback_cap_seconds=cap)
    wait = backoff.after_pushback(hint_ms, attempt, random.Random(seed))
    assert wait <= cap
    assert wait >= min(cap, hint_ms / 1000)
    assert wait >= min(cap, backoff.delay(attempt, random.Random(seed)))


def test_the_first_retry_of_many_clients_is_spread_not_in_lockstep() -> None:
    backoff = Backoff()
    firsts = [backoff.delay(0, random.Random(seed)) for seed in range(1000)]
    assert min(firsts) >= backoff.initial_seconds * (1 - backoff.jitter)
    assert max(firsts) <= backoff.initial_seconds
    # Over the window [0.05, 0.1] s: no tenth of it holds more than a fifth of the clients.
    buckets = [0] * 10
    for delay in firsts:
        buckets[min(9, int((delay - 0.05) / 0.005))] += 1
    assert max(buckets) < 200
    after_hint = {round(backoff.after_pushback(0, 0, random.Random(s)), 6) for s in range(100)}
    assert len(after_hint) > 90  # a zero hint still leaves the jittered backoff


@pytest.mark.parametrize("failures", [1, 2, 5])
def test_a_renewal_shed_by_the_supernode_waits_at_least_the_hint(failures: int) -> None:
    delay = next_renewal_delay(
        granted_ttl_seconds=60,
        expires_at_ms=1_000,  # the lease ends in one second ...
        failures=failures,
        now_ms=0,
        backoff=Backoff(),
        rng=random.Random(3),
        pushback_ms=4_000,  # ... and the supernode asked for four
    )
    assert delay >= 4.0
    without_hint = next_renewal_delay(
        granted_ttl_seconds=60,
        expires_at_ms=1_000,
        failures=failures,
        now_ms=0,
        backoff=Backoff(),
        rng=random.Random(3),
    )
    assert without_hint < 1.0  # otherwise one last try before the lease ends


# ------------------------------------------------------------------ Session.call


class Script:
    """An operation that raises the given errors, then answers ``"ok"``."""

    def __init__(self, *errors: grpc.aio.AioRpcError) -> None:
        self.errors = list(errors)
        self.targets: list[str] = []

    async def __call__(self, connection: DirectoryConnection, deadline: float) -> str:
        self.targets.append(connection.target)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def session(sleeps: list[float]) -> AsyncIterator[Session]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    config = ClientConfig(
        plaintext=True,
        max_attempts=3,
        backoff=Backoff(0.1, 1.0, 2.0, jitter=0.0, pushback_cap_seconds=5.0),
    )
    session = Session(
        TARGETS, Identity.generate(), "alice", config, clock_ms=lambda: 0,
        rng=random.Random(0), sleep=sleep,
    )  # fmt: skip
    yield session
    await session.close()


async def test_a_shed_call_waits_for_the_hint_and_retries_the_same_target(
    session: Session, sleeps: list[float]
) -> None:
    script = Script(shed(700), shed(20))
    assert await session.call(script, authenticated=False) == "ok"
    assert script.targets == [TARGETS[0]] * 3
    assert sleeps == pytest.approx([0.7, 0.2])  # the hint, then the longer backoff


async def test_a_hint_beyond_the_cap_waits_only_the_cap(
    session: Session, sleeps: list[float]
) -> None:
    assert await session.call(Script(shed(3_600_000)), authenticated=False) == "ok"
    assert sleeps == [5.0]


async def test_shed_on_every_attempt_raises_overloaded_with_the_last_hint(
    session: Session, sleeps: list[float]
) -> None:
    with pytest.raises(Overloaded, match="overloaded") as raised:
        await session.call(Script(shed(100), shed(100), shed(900)), authenticated=False)
    assert raised.value.retry_after_seconds == 0.9
    assert len(sleeps) == 2  # no wait after the last attempt


async def test_resource_exhausted_without_a_hint_is_final(
    session: Session, sleeps: list[float]
) -> None:
    script = Script(shed(None))
    with pytest.raises(RateLimited) as raised:
        await session.call(script, authenticated=False)
    assert type(raised.value) is RateLimited
    assert script.targets == [TARGETS[0]] and sleeps == []
