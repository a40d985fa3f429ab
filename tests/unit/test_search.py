import pytest

from supernode.directory.search import (
    Rank,
    Scored,
    fold,
    index_terms,
    normalize_query,
    scan_term,
    score,
)
from supernode.ratelimit import TokenBuckets


@pytest.mark.parametrize(
    ("text", "folded"),
    [("José Álvarez", "jose alvarez"), ("ÅNGSTRÖM", "angstrom"), ("Straße", "strasse"),
     ("\uff26\uff55\uff4c\uff4c", "full"), ("plain", "plain")],
)  # fmt: skip
def test_fold_removes_case_and_accents(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_index_terms_are_handle_and_folded_words() -> None:
    assert index_terms("jalvarez", "José  Álvarez-Pérez") == [
        "alvarez",
        "jalvarez",
        "jose",
        "perez",
    ]


def test_score_ranks_exact_then_handle_prefix_then_word_prefix() -> None:
    assert score("jose", "jose", "Someone") == Scored(Rank.EXACT_HANDLE, "jose")
    assert score("jos", "josefina", "X") == Scored(Rank.HANDLE_PREFIX, "josefina")
    assert score("alv", "jalvarez", "José Álvarez") == Scored(Rank.WORD_PREFIX, "jalvarez")
    assert score("jose alv", "jalvarez", "José Álvarez") == Scored(Rank.WORD_PREFIX, "jalvarez")
    assert score("jose xyz", "jalvarez", "José Álvarez") is None
    assert score("lvarez", "jalvarez", "José Álvarez") is None  # infix is not prefix


def test_query_normalization_and_scan_term() -> None:
    assert normalize_query("  JOSÉ   Alv ") == "jose alv"
    assert scan_term("jose alvarez") == "alvarez"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_limits_and_refills() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.allow("s") for _ in range(4)] == [True, True, True, False]
    assert buckets.retry_after("s") == pytest.approx(0.5)
    assert buckets.allow("other")  # buckets are per key
    clock.now += 0.5
    assert buckets.allow("s")
    assert not buckets.allow("s")


def test_token_buckets_forget_oldest_keys() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, clock=Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        assert buckets.allow(key)
    assert buckets.allow("a")  # forgotten, starts full
    assert not buckets.allow("c")
