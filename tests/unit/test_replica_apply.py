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

from client_sdk.protocol.records import Version, supersedes
from supernode.directory.lease import LeasePolicy
from supernode.directory.presence import Change, DeviceWrite, Replica, burial_seq
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


VERSIONS = st.none() | st.builds(Version, st.integers(1, 50), st.booleans(), st.integers(0, 10**6))


@given(newest=VERSIONS, at_least=st.integers(0, 60))
def test_a_burial_covers_every_seq_it_was_told_of_and_never_lowers_one(
    newest: Version | None, at_least: int
) -> None:
    seq = burial_seq(newest, at_least)
    stored = 0 if newest is None else newest.seq
    if seq is None:  # nothing to write: no live record, and nothing above the burial
        assert newest is None or newest.tombstone
        assert at_least <= stored
    else:
        assert seq >= at_least and seq >= stored
        assert seq in (at_least, stored)
        tomb = Version(seq, True, 0)
        assert newest is None or supersedes(tomb, newest), "the tombstone must win"


def test_an_unregister_with_a_higher_seq_blocks_a_late_registration(tmp_path: Path) -> None:
    """The client sent seq 7 and never saw an answer, then unregistered saying so: the
    tombstone covers 7, so the late (or hinted) 7 cannot bring the device back."""
    store, r = replica(tmp_path / "db")
    assert r.apply(live(5)) is not None
    removal = r.removal("alice", "phone", at_least_seq=7)
    assert removal is not None and removal.write.seq == 7 and removal.lease_was_running
    assert r.apply(removal.write) is not None
    assert r.apply(live(7)) is None and r.apply(live(6)) is None
    assert r.apply(live(8)) is not None, "a newer registration still wins"
    store.close()


def test_an_unregister_with_a_seq_buries_a_device_this_replica_never_saw(tmp_path: Path) -> None:
    store, r = replica(tmp_path / "db")
    assert r.removal("alice", "phone") is None, "no seq, nothing stored: nothing to write"
    removal = r.removal("alice", "phone", at_least_seq=4)
    assert removal is not None and removal.write.tombstone and not removal.lease_was_running
    r.apply(removal.write)
    assert r.apply(live(4)) is None
    assert r.removal("alice", "phone", at_least_seq=4) is None, "already buried at 4"
    raised = r.removal("alice", "phone", at_least_seq=9)
    assert raised is not None and raised.write.seq == 9
    store.close()
