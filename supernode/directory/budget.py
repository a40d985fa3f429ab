"""How much one answer may hold: the operator's ``max_response_bytes``, not what a caller asks.

A call whose answer size the caller chooses (LookupMany over many handles with many devices,
a Watch snapshot, a Search limit) is built entry by entry against a :class:`ResponseBudget`,
so neither the answer on the wire nor the memory spent building it grows past the limit
(before the limit a 2.4 KB LookupMany request over large records took a node's RSS from
83 MB to 744 MB). What is left out is the caller's to ask for again (LookupMany's
``unanswered``) or a refusal that names the limit (a Watch snapshot).
"""

# A length-delimited field's tag and length prefix take at most this many bytes (a 1-byte
# tag and a varint length up to 2^35): counting it per entry keeps the encoded answer within
# the budget without encoding anything twice.
ENTRY_OVERHEAD_BYTES = 6


class ResponseBudget:
    """Bytes left for the entries of one answer. The first entry always fits, so an answer
    makes progress even when one entry alone is larger than the limit (a single account's
    answer is bounded by the record limits, far below any sensible limit)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._left = max_bytes
        self._empty = True

    def take(self, payload_bytes: int) -> bool:
        """Count an entry of ``payload_bytes`` in if it fits; False (counting nothing) if not."""
        size = payload_bytes + ENTRY_OVERHEAD_BYTES
        if size > self._left and not self._empty:
            return False
        self._left -= size
        self._empty = False
        return True
