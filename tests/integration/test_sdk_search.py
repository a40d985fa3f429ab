"""Acceptance 5: search through the SDK against a real supernode."""

import dataclasses

import pytest

from client_sdk import InvalidArgument, RateLimited
from tests.integration.sdk_support import TEST_CONFIG, Clients, StartSupernode

ACCOUNTS = [
    # handle, display name, discoverable
    ("zoe.adams", "Zoë Adams", True),
    ("zoey", "Zoey Brown", True),
    ("jose.alvarez", "José Álvarez", True),
    ("maria", "María José Núñez", True),
    ("hidden.jose", "José Hidden", False),
]


async def test_search_by_prefix_with_folding_limits_and_rate_limit(
    start_supernode: StartSupernode, sdk_clients: Clients
) -> None:
    node = start_supernode("--limits-search-burst", "20", "--limits-search-rate-per-second", "1")
    target = node.grpc_target
    for handle, name, discoverable in ACCOUNTS:
        await sdk_clients.open(target, handle).create_account(name, discoverable=discoverable)
    searcher = await sdk_clients.user(target, "searcher")

    async def handles(query: str, limit: int = 0) -> list[str]:
        return [result.handle for result in await searcher.search(query, limit)]

    # Handle prefix first (ties by handle), then display-name word prefix.
    assert await handles("zoe") == ["zoe.adams", "zoey"]
    # Case and accents fold both ways; the undiscoverable account never shows.
    assert await handles("JOSÉ") == ["jose.alvarez", "maria"]
    assert await handles("jose") == ["jose.alvarez", "maria"]
    assert await handles("alv") == ["jose.alvarez"]
    assert await handles("NUN") == ["maria"]
    assert await handles("hidden") == []
    assert await handles("jose", limit=1) == ["jose.alvarez"]
    [zoe] = await searcher.search("zoe.adams")
    assert zoe.display_name == "Zoë Adams"
    assert zoe.account_key == (await searcher.get_account("zoe.adams")).account_key

    with pytest.raises(InvalidArgument, match="query"):
        await searcher.search("z")

    # A scraper is slowed down: the SDK waits for the server's retry hint (RetryInfo) as
    # long as its attempts last; with one attempt, RateLimited carries the message and hint.
    impatient = dataclasses.replace(TEST_CONFIG, max_attempts=1)
    scraper = await sdk_clients.user(target, "scraper", config=impatient)
    with pytest.raises(RateLimited) as limited:
        for _ in range(100):
            await scraper.search("zoe")
    assert "rate limit" in limited.value.message
    assert limited.value.retry_after_seconds is not None
    assert 0 < limited.value.retry_after_seconds <= 1
