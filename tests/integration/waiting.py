"""Waiting on a condition with a deadline, never on a fixed sleep."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 15.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} not reached in {within} s"
        await asyncio.sleep(0.05)


async def within(awaitable: Awaitable[T], seconds: float = 30.0) -> T:
    """``awaitable``'s result, or TimeoutError after ``seconds`` (``asyncio.timeout``, not
    ``wait_for``: see tests/unit/test_layering.py)."""
    async with asyncio.timeout(seconds):
        return await awaitable
