"""The SDK's monotonic-reads guard: a read older than one served before is detected."""

from client_sdk.identity import Identity
from client_sdk.monotonic import MonotonicReads
from client_sdk.pins import PinStore
from client_sdk.types import Presence
from client_sdk.verify import verify_presence
from tests.unit.sdk_factories import lookup, served_device

ALICE = Identity.generate()


def presence(*seqs: tuple[str, int]) -> Presence:
    devices = [served_device(ALICE, "alice", device_id, seq) for device_id, seq in seqs]
    return verify_presence(lookup(ALICE, "alice", *devices), PinStore.in_memory(), "alice")


def test_an_older_seq_than_one_served_before_is_a_regression() -> None:
    reads = MonotonicReads()
    reads.remember(presence(("phone", 5), ("laptop", 2)))
    assert not reads.regressed(presence(("phone", 5), ("laptop", 3)))
    assert reads.regressed(presence(("phone", 4)))
    assert not reads.regressed(presence())  # absent: it may have gone offline
    reads.remember(presence(("phone", 3)))  # remembering an older read keeps the newest
    assert reads.regressed(presence(("phone", 4)))


def test_memory_is_bounded_least_recently_read_first() -> None:
    reads = MonotonicReads(limit=2)
    reads.remember(presence(("a", 9)))
    reads.remember(presence(("b", 9)))
    reads.remember(presence(("a", 9)))  # a is now the most recent
    reads.remember(presence(("c", 9)))
    assert reads.regressed(presence(("a", 1))) and reads.regressed(presence(("c", 1)))
    assert not reads.regressed(presence(("b", 1)))  # forgotten
