"""Accounts in a cluster: claimed in etcd, read from the node's mirror.

Implements the ``AccountRegistry`` port. A handle is claimed by a create-if-absent
transaction on ``/accounts/<handle>``, so exactly one of any number of racing creators, on
any nodes, wins. The winner's node writes the account into its own store at once (a
GetAccount right after CreateAccount on the same node finds it); every other node gets it
through the mirror. Reads never leave the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from supernode.cluster.etcd import EtcdClient, EtcdUnavailable
from supernode.cluster.keys import Keys
from supernode.cluster.mirror import keep_newer_state
from supernode.directory.account_record import AccountRecord
from supernode.errors import Aborted, Reason, Unavailable
from supernode.store import Store

# Compare-and-swap attempts of one account-state change before giving up: each failed one
# means another change of the same account was stored in between (rare: one account's
# own devices), and the next attempt re-checks the change against it.
_CAS_ATTEMPTS = 8


class ClusterAccounts:
    def __init__(self, store: Store, etcd: EtcdClient, keys: Keys) -> None:
        self._store = store
        self._etcd = etcd
        self._keys = keys
        self.get_account = store.get_account
        self.get_accounts = store.get_accounts
        self.search_handles = store.search_handles
        self.account_count = store.account_count
        self.get_account_state = store.get_account_state
        self.changed_accounts = store.changed_accounts
        self.etcd_errors = 0

    async def claim_account(
        self, handle: str, account: AccountRecord, search_terms: Sequence[str] = ()
    ) -> bool:
        if self._store.get_account(handle) is not None:
            return False  # known taken: no need to ask etcd
        try:
            claimed = await self._etcd.create_if_absent(
                self._keys.account(handle), account.encode()
            )
        except EtcdUnavailable as exc:
            self.etcd_errors += 1
            raise Unavailable(
                "account: creating an account needs the cluster's coordination store (etcd), "
                f"which is unreachable; lookups, renewals and watches still work. ({exc})",
                reason=Reason.NOT_READY,
            ) from exc
        if claimed:
            self._store.insert_account(handle, account, search_terms)
        return claimed

    async def update_account_state(
        self, handle: str, update: Callable[[bytes | None], bytes]
    ) -> bytes:
        """Read the state from etcd (linearizable, not the mirror, which may lag), apply
        ``update``, and store the result only if the key's mod revision is unchanged;
        otherwise start again from the newer state, where ``update`` decides anew (a
        second rotation from the same key fails there). The winner's node stores the
        state at once; the others get it through the mirror."""
        key = self._keys.account_state(handle)
        try:
            for _ in range(_CAS_ATTEMPTS):
                entry = await self._etcd.get(key)
                current = None if entry is None else entry.value
                state = update(current)
                if state == current:  # a retried change, already stored
                    return state
                revision = 0 if entry is None else entry.mod_revision
                if await self._etcd.compare_and_swap(key, state, revision):
                    keep_newer_state(self._store, handle, state)
                    return state
        except EtcdUnavailable as exc:
            self.etcd_errors += 1
            raise Unavailable(
                "account: changing an account needs the cluster's coordination store (etcd), "
                f"which is unreachable; lookups, renewals and watches still work. ({exc})",
                reason=Reason.NOT_READY,
            ) from exc
        raise Aborted(
            f"account: {handle!r} changed {_CAS_ATTEMPTS} times while this change was "
            "being stored; try again",
            reason=Reason.CONFLICT,
        )
