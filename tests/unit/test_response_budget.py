"""Answers bounded in bytes (issue 16): LookupMany past ``max_response_bytes`` is partial,
its rest listed as ``unanswered``, so what a caller chooses to ask for never sizes an answer."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.identity import Identity
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_account
from supernode.directory.accounts import Accounts
from supernode.directory.budget import ENTRY_OVERHEAD_BYTES, ResponseBudget
from supernode.directory.lease import LeasePolicy
from supernode.directory.presence import Admission, Presence, Replica
from supernode.directory.validation import MIN_RESPONSE_BYTES, Limits
from supernode.store import Store
from tests.unit.factories import NOW_MS, device_record, signed

POLICY = LeasePolicy(
    min_ttl_seconds=1, max_ttl_seconds=100, default_ttl_seconds=10, max_clock_skew_seconds=30
)
LIMITS = Limits(max_response_bytes=MIN_RESPONSE_BYTES, max_lookup_many=100)


@given(st.lists(st.integers(min_value=0, max_value=100_000)), st.integers(1, 300_000))
def test_a_budget_keeps_what_fits_and_always_one(sizes: list[int], max_bytes: int) -> None:
    """As callers use it: entries in order until the first that does not fit."""
    budget = ResponseBudget(max_bytes)
    kept: list[int] = []
    for size in sizes:
        if not budget.take(size):
            break
        kept.append(size)
    used = sum(size + ENTRY_OVERHEAD_BYTES for size in kept)
    assert used <= max_bytes or len(kept) == 1  # the first entry always goes in
    if sizes:
        assert kept
    if len(kept) < len(sizes):  # stopped: the next one really did not fit
        assert used + sizes[len(kept)] + ENTRY_OVERHEAD_BYTES > max_bytes


def test_limits_refuse_a_budget_one_answer_cannot_fit() -> None:
    with pytest.raises(ValueError, match="max_response_bytes"):
        Limits(max_response_bytes=1000)


@pytest.fixture
def presence(tmp_path: Path) -> Iterator[tuple[Presence, Accounts]]:
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    accounts = Accounts(store, limits=LIMITS, policy=POLICY, clock_ms=lambda: NOW_MS)
    yield (
        Presence(
            Admission(
                accounts, policy=POLICY, limits=LIMITS, clock_ms=lambda: NOW_MS, node_name="n"
            ),
            Replica(store, accounts, policy=POLICY, limits=LIMITS, clock_ms=lambda: NOW_MS),
        ),
        accounts,
    )
    store.close()


def large_user(presence: Presence, accounts: Accounts, handle: str) -> None:
    """An account with 16 devices at the record limits: about 37 KB of answer."""
    identity = Identity.generate()
    body = pb.Account.FromString(sign_account(identity, handle, "x" * 64).account)
    body.created_at_ms = NOW_MS
    raw = body.SerializeToString()
    asyncio.run(accounts.create(raw, identity.sign(CREATE_ACCOUNT_DOMAIN, raw)))
    endpoint = pb.Endpoint(
        address="2001:db8:ffff:ffff:ffff:ffff:ffff:fff0",
        port=65535,
        protocol=pb.TRANSPORT_PROTOCOL_UDP,
        type=pb.CANDIDATE_TYPE_SERVER_REFLEXIVE,
    )
    for index in range(16):
        record = device_record(
            handle=handle,
            device_id=f"{index:02d}" + "d" * 62,
            endpoints=[endpoint] * 16,
            capabilities=[f"{c:02d}" + "c" * 62 for c in range(16)],
        )
        presence.register(handle, signed(identity, record))


def test_a_large_lookup_many_is_partial_and_the_rest_is_asked_again(
    presence: tuple[Presence, Accounts],
) -> None:
    node, accounts = presence
    handles = [f"user{i}" for i in range(5)]
    for handle in handles:
        large_user(node, accounts, handle)
    single = len(node.lookup("user0"))
    assert 30_000 < single < MIN_RESPONSE_BYTES
    asked = ["ghost", *handles, "user0", "nobody"]
    settled: list[str] = []
    pending = asked
    while pending:
        raw = node.lookup_many(pending)
        assert len(raw) <= LIMITS.max_response_bytes
        answer = pb.LookupManyResponse.FromString(raw)
        got = [r.account.handle for r in answer.results]
        parts = got + list(answer.not_found) + list(answer.unanswered)
        assert sorted(parts) == sorted(dict.fromkeys(pending))  # each exactly once
        assert len(got) + len(answer.not_found) >= 1  # progress
        settled += parts[: len(parts) - len(answer.unanswered)]
        pending = list(answer.unanswered)
    assert sorted(settled) == sorted(dict.fromkeys(asked))


def test_a_small_lookup_many_is_whole(presence: tuple[Presence, Accounts]) -> None:
    node, accounts = presence
    large_user(node, accounts, "solo")
    answer = pb.LookupManyResponse.FromString(node.lookup_many(["solo", "ghost"]))
    assert [r.account.handle for r in answer.results] == ["solo"]
    assert list(answer.not_found) == ["ghost"] and not answer.unanswered
