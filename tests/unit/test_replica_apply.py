"""Apply on a replica: the merge rule over a real RocksDB store, as replication will use it.

Writes here are admitted values (:class:`DeviceWrite`), as a coordinator would send them;
what a replica keeps must depend only on the set of writes it received, never on their
order or on how often each arrived.
"""

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.directory.lease import LeasePolicy
from supernode.directory.presence import Change, DeviceWrite, Replica
from supernode.directory.validation import Limits
from supernode.store import Store

NOW_MS = 1_700_000_000_000
POLICY = LeasePolicy(min_ttl_seconds=1, max_ttl_seconds=100, default_ttl_seconds=10)


class NoAccounts:
    """Presence apply never reads accounts; lookups would, and these tests make none."""

    def account_key(self, handle: str) -> bytes:
        raise AssertionError("apply must not need the account key")

    def find(self, handle: str) -> bytes | None:
        return None


def replica(path: Path) -> tuple[Store, Replica]:
    store = Store(path, block_cache_bytes=1 << 20)
    return store, Replica(
        store, NoAccounts(), policy=POLICY, limits=Limits(), clock_ms=lambda: NOW_MS
    )


def live(seq: int, expires: int = 60_000, device_id: str = "phone") -> DeviceWrite:
    return DeviceWrite("alice", device_id, seq, NOW_MS + expires, f"device-{seq}".encode())


def tombstone(seq: int, expires: int = 500_000, device_id: str = "phone") -> DeviceWrite:
    return DeviceWrite("alice", device_id, seq, NOW_MS + expires, b"")


def test_an_unregister_replaces_the_live_record_of_the_same_seq(tmp_path: Path) -> None:
    store, r = replica(tmp_path / "db")
    assert r.apply(live(5)) is not None
    change = r.apply(tombstone(5))
    assert change is not None and change.change is Change.UNREGISTERED
    assert r.online == 0
    assert r.apply(live(5)) is None, "the live record must not come back"
    slot = store.device_slot("alice", "phone")
    assert slot is not None and not slot.live and slot.seq == 5
    store.close()


def test_applying_the_same_write_twice_changes_nothing(tmp_path: Path) -> None:
    store, r = replica(tmp_path / "db")
    first = r.apply(live(2))
    assert first is not None and first.change is Change.ONLINE
    before = store.dump()
    assert r.apply(live(2)) is None
    assert r.apply(live(1)) is None
    assert store.dump() == before and r.online == 1
    store.close()


def test_a_tombstone_that_arrives_first_blocks_what_it_removed(tmp_path: Path) -> None:
    store, r = replica(tmp_path / "db")
    assert r.apply(tombstone(3)) is None  # nothing was live here: no event, but kept
    assert r.apply(live(3)) is None and r.apply(live(2)) is None
    later = r.apply(live(4))
    assert later is not None and later.change is Change.ONLINE
    store.close()


writes = st.lists(
    st.builds(
        lambda seq, dead, expires, device: (tombstone if dead else live)(seq, expires, device),
        st.integers(min_value=1, max_value=4),
        st.booleans(),
        st.sampled_from([10_000, 60_000, 500_000]),
        st.sampled_from(["phone", "laptop"]),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=40, deadline=None)
@given(writes, st.randoms(use_true_random=False))
def test_replicas_that_got_the_same_writes_store_the_same_bytes(
    history: list[DeviceWrite], rng: random.Random
) -> None:
    shuffled = history + rng.sample(history, k=len(history) // 2)  # some arrive twice
    rng.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        one, first = replica(Path(tmp) / "one")
        two, second = replica(Path(tmp) / "two")
        for write in history:
            first.apply(write)
        for write in shuffled:
            second.apply(write)
        assert one.dump()["devices"] == two.dump()["devices"]
        assert one.dump()["expiry"] == two.dump()["expiry"]
        assert first.online == second.online
        one.close()
        two.close()
