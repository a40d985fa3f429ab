"""The coalescer: concurrent loads share batches; each caller gets its own value or error."""

import asyncio

import pytest

from client_sdk.coalesce import Coalescer


class Fetcher:
    """A batch function that records the batches it was asked for."""

    def __init__(self, *, fail: Exception | None = None, gate: asyncio.Event | None = None):
        self.batches: list[list[str]] = []
        self.asked = asyncio.Event()  # set by the first batch
        self.fail = fail
        self.gate = gate

    async def __call__(self, keys: list[str]) -> dict[str, str | Exception]:
        self.batches.append(keys)
        self.asked.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: (KeyError(k) if k.startswith("missing") else k.upper()) for k in keys}


async def test_loads_in_one_turn_share_one_batch_and_duplicates_are_fetched_once() -> None:
    fetch = Fetcher()
    coalescer = Coalescer[str, str](fetch, max_batch=100)
    values = await asyncio.gather(*(coalescer.load(k) for k in ["a", "b", "a", "c"]))
    assert values == ["A", "B", "A", "C"]
    assert fetch.batches == [["a", "b", "c"]]


async def test_a_lone_load_is_a_batch_of_one_and_sequential_loads_are_not_joined() -> None:
    fetch = Fetcher()
    coalescer = Coalescer[str, str](fetch, max_batch=100)
    assert await coalescer.load("a") == "A"
    assert await coalescer.load("b") == "B"
    assert fetch.batches == [["a"], ["b"]]


async def test_a_full_batch_leaves_at_once_and_the_rest_go_in_the_next() -> None:
    fetch = Fetcher()
    coalescer = Coalescer[str, str](fetch, max_batch=3)
    keys = [f"k{i}" for i in range(7)]
    assert await asyncio.gather(*(coalescer.load(k) for k in keys)) == [k.upper() for k in keys]
    assert [len(batch) for batch in fetch.batches] == [3, 3, 1]
    assert sorted(k for batch in fetch.batches for k in batch) == keys


async def test_each_key_gets_its_own_error_and_the_others_their_values() -> None:
    coalescer = Coalescer[str, str](Fetcher(), max_batch=100)
    results = await asyncio.gather(
        coalescer.load("a"), coalescer.load("missing"), return_exceptions=True
    )
    assert results[0] == "A"
    assert isinstance(results[1], KeyError)


async def test_a_failed_batch_fails_every_caller_of_it() -> None:
    coalescer = Coalescer[str, str](Fetcher(fail=ConnectionError("down")), max_batch=100)
    results = await asyncio.gather(coalescer.load("a"), coalescer.load("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_batch_that_leaves_a_key_unanswered_fails_that_key() -> None:
    async def forgetful(keys: list[str]) -> dict[str, str | Exception]:
        return {keys[0]: "first"}

    coalescer = Coalescer[str, str](forgetful, max_batch=100)
    results = await asyncio.gather(coalescer.load("a"), coalescer.load("b"), return_exceptions=True)
    assert results[0] == "first"
    assert isinstance(results[1], LookupError)


async def test_loads_while_a_batch_is_in_flight_go_in_the_next_batch() -> None:
    gate = asyncio.Event()
    fetch = Fetcher(gate=gate)
    coalescer = Coalescer[str, str](fetch, max_batch=100)
    first = asyncio.ensure_future(coalescer.load("a"))
    await fetch.asked.wait()
    second = asyncio.ensure_future(coalescer.load("b"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, second) == ["A", "B"]
    assert fetch.batches == [["a"], ["b"]]


async def test_a_cancelled_caller_leaves_the_batch_to_the_others() -> None:
    gate = asyncio.Event()
    fetch = Fetcher(gate=gate)
    coalescer = Coalescer[str, str](fetch, max_batch=100)
    leaving = asyncio.ensure_future(coalescer.load("a"))
    staying = asyncio.ensure_future(coalescer.load("a"))
    other = asyncio.ensure_future(coalescer.load("b"))
    await fetch.asked.wait()
    leaving.cancel()
    gate.set()
    assert await asyncio.gather(staying, other) == ["A", "B"]
    assert leaving.cancelled()


async def test_a_window_gathers_loads_made_within_it() -> None:
    fetch = Fetcher()
    coalescer = Coalescer[str, str](fetch, max_batch=100, window_seconds=0.05)

    async def later(key: str) -> str:
        await asyncio.sleep(0)  # a turn later: outside the turn, inside the window
        return await coalescer.load(key)

    assert await asyncio.gather(coalescer.load("a"), later("b")) == ["A", "B"]
    assert fetch.batches == [["a", "b"]]


async def test_close_cancels_queued_and_in_flight_callers() -> None:
    gate = asyncio.Event()
    fetch = Fetcher(gate=gate)
    coalescer = Coalescer[str, str](fetch, max_batch=100)
    in_flight = asyncio.ensure_future(coalescer.load("a"))
    await fetch.asked.wait()
    queued = asyncio.ensure_future(coalescer.load("b"))
    await asyncio.sleep(0)
    await coalescer.close()
    for caller in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await caller


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer[str, str](Fetcher(), max_batch=0)
    with pytest.raises(ValueError, match="window_seconds"):
        Coalescer[str, str](Fetcher(), max_batch=1, window_seconds=-1)
