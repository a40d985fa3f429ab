"""Accounts: creation with proof of key possession, key rotation, and reads.

Storage sits behind the :class:`supernode.directory.ports.AccountRegistry` port, so that a
cluster backs it with etcd (a create-if-absent transaction plus a local mirror) while a
single node uses RocksDB directly (:class:`supernode.store.Store` implements the port).
"""

from collections.abc import Callable
from functools import lru_cache
from itertools import takewhile

from client_sdk.protocol.records import parse_account
from client_sdk.protocol.rotation import ForgedRotation, StaleRotation, check_next, parse_rotation
from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle, check_signature
from supernode.directory import account_state, lease, search
from supernode.directory.account_record import AccountRecord
from supernode.directory.budget import ResponseBudget
from supernode.directory.ports import AccountRegistry
from supernode.directory.validation import Limits
from supernode.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)


class Accounts:
    """The account rules: validation, proof of possession, uniqueness, lookups by handle."""

    def __init__(
        self,
        registry: AccountRegistry,
        *,
        limits: Limits,
        policy: lease.LeasePolicy,
        clock_ms: Callable[[], int],
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._policy = policy
        self._clock_ms = clock_ms
        # The signed Account never changes (rotations live in the account's state); parsing
        # one costs more than a dict hit.
        self.creation_key = lru_cache(maxsize=65536)(self._creation_key)

    async def create(self, account_raw: bytes, signature: bytes) -> pb.Account:
        account = parse_account(account_raw, self._limits)
        check_signature("signature", signature)
        lease.check_issued_at(
            account.created_at_ms, self._clock_ms(), self._policy, "account.created_at_ms"
        )
        if not signature_is_valid(
            account.account_key, CREATE_ACCOUNT_DOMAIN, account_raw, signature
        ):
            raise PermissionDenied(
                "signature: does not verify with account.account_key",
                reason=Reason.SIGNATURE_INVALID,
            )
        terms = (
            search.index_terms(account.handle, account.display_name) if account.discoverable else []
        )
        stored = AccountRecord(account_raw, signature)
        if not await self._registry.claim_account(account.handle, stored, terms):
            raise AlreadyExists(
                f"account.handle: {account.handle!r} is taken", reason=Reason.HANDLE_TAKEN
            )
        return account

    def get(self, handle: str) -> AccountRecord:
        """The stored account; NOT_FOUND for a handle nobody created."""
        check_handle("handle", handle)
        raw = self._registry.get_account(handle)
        if raw is None:
            raise NotFound(f"handle: no account {handle!r}", reason=Reason.ACCOUNT_NOT_FOUND)
        return raw

    def find(self, handle: str) -> AccountRecord | None:
        """The stored account or None, without validating the handle (hot path)."""
        return self._registry.get_account(handle)

    def _creation_key(self, handle: str) -> bytes:
        account = pb.Account()
        account.ParseFromString(self.get(handle).account)
        return account.account_key

    def account_key(self, handle: str) -> bytes:
        """The key the account signs with now: the end of its rotation chain."""
        creation_key = self.creation_key(handle)
        return account_state.current_key(self._registry.get_account_state(handle), creation_key)

    def rotations(self, handle: str) -> list[bytes]:
        """The account's rotation chain, serialized ``SignedKeyRotation``s, oldest first."""
        state = self._registry.get_account_state(handle)
        return [r.SerializeToString() for r in account_state.rotations_of(state)]

    async def rotate(self, session_handle: str, signed: pb.SignedKeyRotation) -> list[bytes]:
        """Append a rotation to the session's own account's chain; the chain after it.

        The statement must be the next link (signed by the current key and the new one, at
        the next seq); checked against the state the write replaces, so of two concurrent
        rotations (a compare-and-swap in a cluster) exactly one is stored.
        """
        rotation = parse_rotation(signed)
        if rotation.handle != session_handle:
            raise PermissionDenied(
                f"rotation.handle: {rotation.handle!r}, but this session belongs to "
                f"{session_handle!r}",
                reason=Reason.NOT_OWNER,
            )
        lease.check_issued_at(
            rotation.issued_at_ms, self._clock_ms(), self._policy, "rotation.issued_at_ms"
        )
        creation_key = self.creation_key(session_handle)

        def update(current: bytes | None) -> bytes:
            chain = account_state.rotations_of(current)
            if chain and chain[-1] == signed:  # a retry of the last rotation: already done
                assert current is not None
                return current
            key = account_state.current_key(current, creation_key)
            try:
                check_next(session_handle, key, len(chain) + 1, signed)
            except StaleRotation as exc:
                raise FailedPrecondition(str(exc), reason=Reason.STALE_SEQ) from exc
            except ForgedRotation as exc:
                raise PermissionDenied(str(exc), reason=Reason.SIGNATURE_INVALID) from exc
            return account_state.with_rotation(current, signed)

        state = await self._registry.update_account_state(session_handle, update)
        return [r.SerializeToString() for r in account_state.rotations_of(state)]

    def count(self) -> int:
        return self._registry.account_count()

    def search(
        self, query: str, limit: int, visible: Callable[[str], bool] = lambda handle: True
    ) -> list[AccountRecord]:
        """Discoverable accounts matching ``query`` that ``visible`` admits (privacy: the
        caller's view), best first, at most ``limit`` (and no more than
        ``max_response_bytes`` hold)."""
        folded = search.normalize_query(query)
        if len(folded) < self._limits.search_min_query_chars:
            raise InvalidArgument(
                f"query: {len(folded)} characters after folding, "
                f"at least {self._limits.search_min_query_chars} needed"
            )
        if len(folded) > search.MAX_QUERY_CHARS:
            raise InvalidArgument(
                f"query: {len(folded)} characters, at most {search.MAX_QUERY_CHARS}"
            )
        limit = min(limit or self._limits.search_default_results, self._limits.search_max_results)
        # Scanning a bounded window keeps a one-letter-wide query from reading the whole index.
        candidates = self._registry.search_handles(search.scan_term(folded), 50 * limit + 100)
        scored: list[tuple[search.Scored, AccountRecord]] = []
        for stored in self._registry.get_accounts(candidates):
            if stored is None:
                continue
            account = pb.Account.FromString(stored.account)
            match = search.score(folded, account.handle, account.display_name)
            if match is not None and account.discoverable and visible(account.handle):
                scored.append((match, stored))
        scored.sort(key=lambda pair: pair[0])
        budget = ResponseBudget(self._limits.max_response_bytes)  # an operator's large limit
        return list(
            takewhile(
                lambda r: budget.take(len(r.account) + len(r.signature)),
                (r for _, r in scored[:limit]),
            )
        )
