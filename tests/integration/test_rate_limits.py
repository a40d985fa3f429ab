"""Rate limits on a real node (supernode.rate): each refusal is RESOURCE_EXHAUSTED with a
clear message, a google.rpc.RetryInfo detail and the pushback trailer, is counted by
method and key kind, and changes nothing; logging in again does not reset a limit; a
client cannot claim another address; the SDK waits for a short hint and gets through.

Limits are set low for each test (flags), so that the refusal is a count, not a race.
"""

from collections.abc import Callable

import grpc
import pytest

from client_sdk import Identity, RateLimited
from client_sdk.protocol.pushback import pushback_ms
from client_sdk.protocol.refusals import STATUS_DETAILS_KEY, error_reason
from client_sdk.protocol.signing import LOGIN_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, sign_account
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import Clients, unique

Code = grpc.StatusCode
METRIC = "supernode_rate_limited_total"
SLOW = "0.001"  # per second: no refill within a test


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    error = caught.value
    assert error.code() == Code.RESOURCE_EXHAUSTED, error.details()
    return error


def assert_retry_hint(error: grpc.aio.AioRpcError, pattern: str) -> int:
    """The message names the limit and the wait; both trailers carry the same hint."""
    details = error.details() or ""
    assert pattern in details, details
    trailing = tuple(error.trailing_metadata() or ())
    hint = pushback_ms(trailing)  # RetryInfo first
    assert hint is not None and hint > 0
    assert f"retry in {hint / 1000:.1f} s" in details
    bare = pushback_ms([m for m in trailing if m[0] != STATUS_DETAILS_KEY])
    assert bare == hint
    assert error_reason(trailing) == "RATE_LIMITED"
    return hint


@pytest.mark.parametrize("workers", [1, 2])
async def test_create_account_is_limited_per_source_and_a_claimed_address_is_ignored(
    start_supernode: Callable[..., SupernodeProcess], workers: int
) -> None:
    """Through a worker, the primary limits by the address the worker saw: a client that
    sends the forwarding header itself (a fresh address each call) is still one source."""
    node = start_supernode(
        "--workers", str(workers),
        "--rate-create-account-per-source-burst", "3",
        "--rate-create-account-per-source-per-second", SLOW,
        rate_limits=True,
    )  # fmt: skip
    async with DirectoryConnection(node.grpc_target) as conn:
        for n in range(3):
            spoof = (("supernode-peer", f"ipv4:10.9.9.{n}:1"),)
            request = _signed_account(unique("maker"))
            await conn.accounts.CreateAccount(request, metadata=spoof)
        handle = unique("fourth")
        spoof = (("supernode-peer", "ipv4:10.9.9.99:1"),)
        error = await refused(conn.accounts.CreateAccount(_signed_account(handle), metadata=spoof))
        assert_retry_hint(error, "CreateAccount: rate limit of this source address reached")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await conn.get_account(handle)
        assert missing.value.code() == Code.NOT_FOUND  # nothing was stored
    assert node.total(METRIC, method="CreateAccount", key="source") == 1


def _signed_account(handle: str) -> pb.CreateAccountRequest:
    return sign_account(Identity.generate(), handle, handle, True)


async def test_search_limit_is_per_account_so_logging_in_again_does_not_reset_it(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """The scrape of issue 16: every fresh session used to bring a full bucket."""
    node = start_supernode(
        "--rate-search-per-account-burst", "3",
        "--rate-search-per-account-per-second", SLOW,
        rate_limits=True,
    )  # fmt: skip
    async with DirectoryConnection(node.grpc_target) as conn:
        identity = await new_user(conn, "scraper")
        for _ in range(3):
            await conn.search("sc")
        await conn.login(identity, "scraper")  # a new session
        error = await refused(conn.search("sc"))
        assert_retry_hint(error, "Search: rate limit of this account reached")
    assert node.total(METRIC, method="Search", key="account") == 1


async def test_lookup_many_spends_one_token_per_distinct_handle(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(
        "--rate-lookup-per-account-burst", "10",
        "--rate-lookup-per-account-per-second", SLOW,
        rate_limits=True,
    )  # fmt: skip
    async with DirectoryConnection(node.grpc_target) as conn:
        await new_user(conn, "counter")
        await conn.lookup_many(["counter"] * 500 + [f"hhh{n}" for n in range(7)])  # 8 handles
        error = await refused(conn.lookup_many([f"xxx{n}" for n in range(3)]))
        assert_retry_hint(error, "LookupMany: handles-per-second limit of this account")
        await conn.lookup_many(["hhh1", "hhh2"])  # exactly what is left
    assert node.total(METRIC, method="LookupMany", key="account") == 1


async def test_failed_logins_lock_the_handle_out(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    node = start_supernode(
        "--rate-failed-login-per-account-burst", "2",
        "--rate-failed-login-per-account-per-second", SLOW,
        rate_limits=True,
    )  # fmt: skip
    async with (
        DirectoryConnection(node.grpc_target) as owner,
        DirectoryConnection(node.grpc_target) as attacker,
    ):
        identity = await new_user(owner, "victim")
        stranger = Identity.generate()
        for _ in range(2):
            challenge = await attacker.sessions.GetChallenge(
                pb.GetChallengeRequest(handle="victim")
            )
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await attacker.sessions.Login(
                    pb.LoginRequest(
                        handle="victim",
                        challenge=challenge.challenge,
                        signature=stranger.sign(LOGIN_DOMAIN, challenge.challenge),
                    )
                )
            assert bad.value.code() == Code.PERMISSION_DENIED
        # Locked: even the right signature is not checked until the lockout ends.
        error = await refused(owner.login(identity, "victim"))
        assert_retry_hint(error, "Login: failed-login limit of this account reached")
    assert node.total(METRIC, method="Login", key="failed_login_account") == 1


async def test_the_sdk_waits_for_a_short_hint_and_reports_a_long_one(
    start_supernode: Callable[..., SupernodeProcess], sdk_clients: Clients
) -> None:
    node = start_supernode(
        "--rate-lookup-per-account-burst", "2",
        "--rate-lookup-per-account-per-second", "5",
        "--rate-search-per-account-burst", "1",
        "--rate-search-per-account-per-second", SLOW,
        rate_limits=True,
    )  # fmt: skip
    client = await sdk_clients.user(node.grpc_target, "patient")
    handle = client.handle
    for _ in range(4):  # the third and fourth wait ~0.2 s each for a token, then pass
        await client.lookup(handle)
    assert node.total(METRIC, method="Lookup", key="account") >= 1
    await client.search("pa")
    with pytest.raises(RateLimited) as limited:  # ~1,000 s: beyond the SDK's cap
        await client.search("pa")
    assert limited.value.retry_after_seconds is not None
    assert limited.value.retry_after_seconds > 100
