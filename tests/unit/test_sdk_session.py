"""The retry loop: failover order, backoff schedule, and when it gives up.

Operations are scripted (they raise the statuses a channel would), sleeps are recorded
instead of slept, and no call leaves the process: the channels are never used.
"""

import random
from collections.abc import AsyncIterator

import grpc
import pytest

from client_sdk.backoff import Backoff
from client_sdk.config import ClientConfig
from client_sdk.errors import Closed, InvalidArgument, Unavailable
from client_sdk.identity import Identity
from client_sdk.session import Session
from client_sdk.transport import DirectoryConnection

TARGETS = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, None, None, f"scripted {code.name}")


class Script:
    """An operation that fails with the given codes, then answers ``"ok"``."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, connection: DirectoryConnection, deadline: float) -> str:
        self.calls.append((connection.target, deadline))
        if self.codes:
            raise failure(self.codes.pop(0))
        return "ok"

    @property
    def targets(self) -> list[str]:
        return [target for target, _ in self.calls]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def session(sleeps: list[float]) -> AsyncIterator[Session]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    config = ClientConfig(
        plaintext=True,
        max_attempts=4,
        call_deadline_seconds=2.5,
        backoff=Backoff(0.1, 1.0, 2.0, jitter=0.0),
    )
    session = Session(
        TARGETS,
        Identity.generate(),
        "alice",
        config,
        clock_ms=lambda: 0,
        rng=random.Random(0),
        sleep=sleep,
    )
    yield session
    await session.close()


async def test_unavailable_targets_are_skipped_in_order_with_growing_backoff(
    session: Session, sleeps: list[float]
) -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    script = Script(unavailable, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert await session.call(script, authenticated=False) == "ok"
    assert script.targets == TARGETS
    assert sleeps == pytest.approx([0.1, 0.2])
    assert all(deadline == 2.5 for _, deadline in script.calls)  # per-attempt deadline
    assert session.current_target == TARGETS[2]  # sticky: the next call starts there
    later = Script()
    await session.call(later, authenticated=False)
    assert later.targets == [TARGETS[2]]


async def test_after_the_attempts_run_out_the_error_is_unavailable(
    session: Session, sleeps: list[float]
) -> None:
    script = Script(*[grpc.StatusCode.UNAVAILABLE] * 10)
    with pytest.raises(Unavailable, match="4 attempts") as raised:
        await session.call(script, authenticated=False)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert script.targets == [*TARGETS, TARGETS[0]]  # wrapped around
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])  # no sleep after the last attempt


async def test_an_answer_about_the_request_is_raised_at_once(
    session: Session, sleeps: list[float]
) -> None:
    script = Script(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(InvalidArgument, match="scripted"):
        await session.call(script, authenticated=False)
    assert len(script.calls) == 1 and sleeps == []


async def test_failover_by_a_concurrent_call_is_not_repeated(session: Session) -> None:
    session.failover(TARGETS[0])
    session.failover(TARGETS[0])  # a second call that failed on the same target
    assert session.current_target == TARGETS[1]


async def test_a_closed_session_refuses_calls(session: Session) -> None:
    await session.close()
    with pytest.raises(Closed):
        await session.call(Script(), authenticated=False)


def test_a_session_needs_a_target() -> None:
    with pytest.raises(ValueError):
        Session([], Identity.generate(), "alice", ClientConfig(), clock_ms=int, rng=random.Random())
