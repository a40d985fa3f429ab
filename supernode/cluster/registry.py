"""Accounts in a cluster: claimed in etcd, read from the node's mirror.

Implements the ``AccountRegistry`` port. A handle is claimed by a create-if-absent
transaction on ``/accounts/<handle>``, so exactly one of any number of racing creators, on
any nodes, wins. The winner's node writes the account into its own store at once (a
GetAccount right after CreateAccount on the same node finds it); every other node gets it
through the mirror. Reads never leave the node.
"""

from __future__ import annotations

from collections.abc import Sequence

from supernode.cluster.etcd import EtcdClient, EtcdUnavailable
from supernode.cluster.keys import Keys
from supernode.errors import Unavailable
from supernode.store import Store


class ClusterAccounts:
    def __init__(self, store: Store, etcd: EtcdClient, keys: Keys) -> None:
        self._store = store
        self._etcd = etcd
        self._keys = keys
        self.get_account = store.get_account
        self.get_accounts = store.get_accounts
        self.search_handles = store.search_handles
        self.account_count = store.account_count
        self.etcd_errors = 0

    async def claim_account(
        self, handle: str, account: bytes, search_terms: Sequence[str] = ()
    ) -> bool:
        if self._store.get_account(handle) is not None:
            return False  # known taken: no need to ask etcd
        try:
            claimed = await self._etcd.create_if_absent(self._keys.account(handle), account)
        except EtcdUnavailable as exc:
            self.etcd_errors += 1
            raise Unavailable(
                "account: creating an account needs the cluster's coordination store (etcd), "
                f"which is unreachable; lookups, renewals and watches still work. ({exc})"
            ) from exc
        if claimed:
            self._store.insert_account(handle, account, search_terms)
        return claimed
