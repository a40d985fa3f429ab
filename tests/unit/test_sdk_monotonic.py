"""The SDK's monotonic-reads guard: a read older than one served before, or one that undoes
the client's own acknowledged write, is detected (and a QUORUM read settles it)."""

from client_sdk.errors import SupernodeError, Unavailable
from client_sdk.identity import Identity
from client_sdk.monotonic import MonotonicReads, OwnWrites
from client_sdk.pins import PinStore
from client_sdk.types import Presence
from client_sdk.verify import verify_presence
from client_sdk.write_log import WriteAttempt, WriteKind
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


def test_our_acknowledged_registration_must_be_seen_until_a_quorum_read_settles_it() -> None:
    reads = MonotonicReads()
    reads.wrote("alice", "phone", 7)
    assert reads.regressed(presence())  # a replica that lacks our own write
    assert reads.regressed(presence(("phone", 6)))  # or has an older record of it
    assert not reads.regressed(presence(("phone", 7)))
    assert not reads.regressed(presence(("phone", 8), ("laptop", 1)))
    reads.remember(presence(), settled=False)  # a ONE read does not settle it
    assert reads.regressed(presence())
    reads.remember(presence(), settled=True)  # a majority lacks it: its lease ended
    assert not reads.regressed(presence())
    assert reads.regressed(presence(("phone", 6)))  # still never older than seen


def test_our_acknowledged_unregistration_must_not_be_undone_by_a_lagging_replica() -> None:
    reads = MonotonicReads()
    reads.wrote("alice", "phone", 7)
    reads.removed("alice", "phone", 7)
    assert reads.regressed(presence(("phone", 7)))  # the record our tombstone covers
    assert not reads.regressed(presence())
    assert not reads.regressed(presence(("phone", 8)))  # registered again since, by anyone
    reads.wrote("alice", "phone", 6)  # a late answer to an attempt the tombstone covers
    assert not reads.regressed(presence())
    reads.wrote("alice", "phone", 9)  # registered again by us
    assert reads.regressed(presence())


def test_expectations_are_per_handle() -> None:
    reads = MonotonicReads()
    reads.wrote("bob", "phone", 3)
    assert not reads.regressed(presence())  # alice's presence says nothing of bob's device


def test_own_writes_tell_the_reads_and_then_the_app() -> None:
    seen: list[str] = []

    class App:
        def write_sent(self, attempt: WriteAttempt) -> None:
            seen.append(f"sent {attempt.seq}")

        def write_acknowledged(self, attempt: WriteAttempt, expires_at_ms: int | None) -> None:
            seen.append(f"ok {attempt.seq}")

        def write_failed(self, attempt: WriteAttempt, error: SupernodeError) -> None:
            seen.append(f"failed {attempt.seq}")

    reads = MonotonicReads()
    own = OwnWrites(reads, App())
    register = WriteAttempt("alice", "phone", WriteKind.REGISTER, 4, "n1")
    lost = WriteAttempt("alice", "phone", WriteKind.REGISTER, 5, "n1")
    for attempt in (register, lost):
        own.write_sent(attempt)
    own.write_acknowledged(register, 1000)
    own.write_failed(lost, Unavailable("no answer"))
    assert seen == ["sent 4", "sent 5", "ok 4", "failed 5"]
    assert reads.regressed(presence()) and not reads.regressed(presence(("phone", 4)))
    own.write_acknowledged(WriteAttempt("alice", "phone", WriteKind.UNREGISTER, 5, "n1"), None)
    assert reads.regressed(presence(("phone", 5))) and not reads.regressed(presence())
    OwnWrites(reads, None).write_sent(register)  # without an app observer: nothing else
