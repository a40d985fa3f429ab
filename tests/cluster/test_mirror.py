"""The mirror's resync against a real etcd and a real store: accounts arrive page by page,
the rest of the view at once, and the stored revision is the snapshot's."""

from __future__ import annotations

from pathlib import Path

from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.cluster.etcd_server import LocalEtcd
from supernode.cluster.keys import Keys, MemberInfo
from supernode.cluster.mirror import Mirror, stored_view
from supernode.cluster.view import Applied, ClusterView
from supernode.directory.account_record import AccountRecord
from supernode.revocations import session_revocation
from supernode.store import Store
from tests.cluster.conftest import ClientFactory

KEYS = Keys("/m")


async def test_a_resync_stores_every_account_a_page_at_a_time(
    tmp_path: Path, etcd: LocalEtcd, connect: ClientFactory
) -> None:
    client = connect(etcd, page_size=4)  # 11 accounts and a member: four pages
    handles = [f"user{i:02d}" for i in range(11)]
    for handle in handles[:-1]:  # as stored before signatures were kept: a bare Account
        await client.put(KEYS.account(handle), pb.Account(handle=handle).SerializeToString())
    signed = AccountRecord(pb.Account(handle=handles[-1]).SerializeToString(), b"s" * 64)
    await client.put(KEYS.account(handles[-1]), signed.encode())
    await client.put(KEYS.member("n1"), MemberInfo("n1", "z1", "0.1.0").to_bytes())
    await client.put(KEYS.account("broken"), b"\xff not an account")
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    told: list[Applied] = []
    mirror = Mirror(client, KEYS, store, ClusterView(), on_change=told.append)
    await mirror.resync()
    assert store.account_count() == 11, "every account, the broken one left out"
    for handle in handles:
        stored = store.get_account(handle)
        assert stored is not None and pb.Account.FromString(stored.account).handle == handle
    assert store.get_account(handles[0]) == AccountRecord(
        pb.Account(handle="user00").SerializeToString()
    )
    assert store.get_account(handles[-1]) == signed
    assert set(mirror.view.members) == {"n1"}
    assert len(told) == 1 and told[0].members_changed and told[0].accounts == []
    revision = await client.put(b"/elsewhere", b"x") - 1
    assert mirror.view.revision == revision
    persisted = stored_view(store)
    assert persisted is not None and persisted.revision == revision
    assert set(persisted.members) == {"n1"}
    store.close()


async def test_a_resync_brings_the_stored_revocations_to_etcds(
    tmp_path: Path, etcd: LocalEtcd, connect: ClientFactory
) -> None:
    """One revoked while this node was away is added; one whose lease ended meanwhile
    (gone from etcd, still in the store) is removed, and the token checks are told both."""
    client = connect(etcd)
    kept = session_revocation(b"\x01" * 16, until_ms=2**40)
    stale = session_revocation(b"\x02" * 16, until_ms=1)
    await client.put(KEYS.revocation(kept.name), kept.value)
    store = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    store.put_revocation(stale.name, stale.value)
    told: list[Applied] = []
    view = stored_view(store) or ClusterView()
    view.revoked = dict(store.revocations())
    mirror = Mirror(client, KEYS, store, view, on_change=told.append)
    await mirror.resync()
    assert store.revocations() == [(kept.name, kept.value)]
    assert told[-1].revoked == {stale.name: None, kept.name: kept.value}
    assert mirror.view.revoked == {kept.name: kept.value}
    store.close()
