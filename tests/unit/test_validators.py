"""Property tests of every request validator (issue 16): whatever a field holds, a check
either accepts it, and then it obeys the field's grammar or range, or raises ``InvalidField``
whose message starts with the field's name; never anything else."""

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.validation import (
    CAPABILITY_PATTERN,
    DEVICE_ID_PATTERN,
    HANDLE_PATTERN,
    check_device_id,
    check_display_name,
    check_handle,
)
from supernode.directory import lease, search
from supernode.directory.lease import LeasePolicy
from supernode.rpc.directory import _quorum

POLICY = LeasePolicy(
    min_ttl_seconds=10, max_ttl_seconds=3600, default_ttl_seconds=300, max_clock_skew_seconds=120
)
NOW_MS = 1_700_000_000_000
texts = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[a-z0-9._-]{0,40}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True),
)


def accepted(check: Callable[[], None], field: str) -> bool:
    try:
        check()
    except InvalidField as refused:
        assert str(refused).startswith(f"{field}: "), str(refused)
        return False
    return True


@given(texts)
def test_handles(text: str) -> None:
    ok = accepted(lambda: check_handle("handles[3]", text), "handles[3]")
    assert ok == (HANDLE_PATTERN.fullmatch(text) is not None)


@given(texts)
def test_device_ids(text: str) -> None:
    ok = accepted(lambda: check_device_id("device_id", text), "device_id")
    assert ok == (DEVICE_ID_PATTERN.fullmatch(text) is not None)
    assert not ok or 1 <= len(text) <= 64


@given(st.text(max_size=100), st.integers(min_value=0, max_value=80))
def test_display_names(text: str, limit: int) -> None:
    ok = accepted(
        lambda: check_display_name("account.display_name", text, limit), "account.display_name"
    )
    assert ok == (len(text) <= limit and text.isprintable())


@given(st.text(max_size=80))
def test_capability_grammar(text: str) -> None:
    if CAPABILITY_PATTERN.fullmatch(text):
        assert 1 <= len(text) <= 64 and re.fullmatch(r"[a-z0-9._/-]+", text)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_issued_at_is_within_the_skew(issued_at_ms: int) -> None:
    ok = accepted(
        lambda: lease.check_issued_at(issued_at_ms, NOW_MS, POLICY), "record.issued_at_ms"
    )
    assert ok == (issued_at_ms > 0 and abs(issued_at_ms - NOW_MS) <= 120_000)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_a_granted_ttl_is_within_the_bounds(requested: int) -> None:
    granted = lease.granted_ttl_seconds(requested, POLICY)
    assert 10 <= granted <= 3600
    assert granted == (300 if requested == 0 else min(max(requested, 10), 3600))


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_consistency(value: int) -> None:
    ok = accepted(lambda: _quorum(value), "consistency")
    assert ok == (value in (0, 1, 2))


@given(st.text(max_size=200))
def test_search_queries_fold_without_raising(query: str) -> None:
    folded = search.normalize_query(query)
    assert folded == folded.strip() and "  " not in folded


@pytest.mark.parametrize("field", ["handle", "handles[0]", "record.handle"])
def test_a_refusal_names_the_field_it_was_given(field: str) -> None:
    with pytest.raises(InvalidField, match=rf"^{re.escape(field)}: required"):
        check_handle(field, "")
