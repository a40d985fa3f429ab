"""Account search: text folding, index terms, ranking. Pure functions, no storage.

Folding makes search case- and accent-insensitive: NFKD decomposition, combining marks
dropped, case folded ("José Álvarez" -> "jose alvarez"). A discoverable account is indexed
under its handle and under each folded word of its display name; a query matches a term
by prefix. Undiscoverable accounts are never indexed, so they can never be returned.
"""

import re
import unicodedata
from dataclasses import dataclass

# The longest query, in characters after folding (longer ones are refused, not cut).
MAX_QUERY_CHARS = 64
_WORD_SPLIT = re.compile(r"[^\w]+")


def fold(text: str) -> str:
    """Lowercase, accent-free form used both for index terms and for queries."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", stripped.casefold())


def index_terms(handle: str, display_name: str) -> list[str]:
    """The terms an account is found under: its handle, and its display name's words."""
    words = {w for w in _WORD_SPLIT.split(fold(display_name)) if w}
    words.add(handle)
    return sorted(words)


def normalize_query(query: str) -> str:
    """Fold and trim a query; inner whitespace collapses so "  José " equals "jose"."""
    return " ".join(fold(query).split())


class Rank:
    """Sort keys: lower is better."""

    EXACT_HANDLE = 0
    HANDLE_PREFIX = 1
    WORD_PREFIX = 2


@dataclass(frozen=True, slots=True, order=True)
class Scored:
    rank: int
    handle: str


def score(query: str, handle: str, display_name: str) -> Scored | None:
    """How well an account matches a folded query, or None when it does not.

    A multi-word query ("jose alv") matches when every query word prefixes some
    display-name word, in any order (two query words may prefix the same one:
    search.proto states this rule).
    """
    if handle == query:
        return Scored(Rank.EXACT_HANDLE, handle)
    if handle.startswith(query):
        return Scored(Rank.HANDLE_PREFIX, handle)
    words = [w for w in _WORD_SPLIT.split(fold(display_name)) if w]
    wanted = query.split()
    if wanted and all(any(w.startswith(q) for w in words) for q in wanted):
        return Scored(Rank.WORD_PREFIX, handle)
    return None


def scan_term(query: str) -> str:
    """The term prefix to scan the index for: the longest query word narrows the most."""
    return max(query.split(), key=len)
