"""Presence rules over a real RocksDB store in a temporary directory, with an injected clock."""

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.refusals import Reason
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import sign_account
from supernode.directory.accounts import Accounts
from supernode.directory.lease import LeasePolicy
from supernode.directory.presence import (
    Admission,
    Change,
    DeviceChanged,
    Presence,
    PresenceObserver,
    Replica,
    first_positions,
)
from supernode.directory.validation import Limits
from supernode.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from supernode.store import Store, StoreError
from tests.unit.factories import NOW_MS, device_record, signed

POLICY = LeasePolicy(
    min_ttl_seconds=1, max_ttl_seconds=100, default_ttl_seconds=10, max_clock_skew_seconds=30
)
LIMITS = Limits(max_devices_per_handle=3, max_lookup_many=5)


class Clock:
    def __init__(self) -> None:
        self.now = NOW_MS

    def __call__(self) -> int:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, Change]] = []

    def device_changed(self, event: DeviceChanged) -> None:
        self.changes.append((event.handle, event.device_id, event.change))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    yield s
    s.close()


@pytest.fixture
def accounts(store: Store, clock: Clock) -> Accounts:
    return Accounts(store, limits=LIMITS, policy=POLICY, clock_ms=clock)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def presence(store: Store, accounts: Accounts, clock: Clock, recorder: Recorder) -> Presence:
    return _presence(store, accounts, clock, node_name="n1", observers=[recorder])


def _presence(
    store: Store,
    accounts: Accounts,
    clock: Clock,
    *,
    node_name: str = "n",
    count_online: bool = True,
    observers: Sequence[PresenceObserver] = (),
) -> Presence:
    return Presence(
        Admission(accounts, policy=POLICY, limits=LIMITS, clock_ms=clock, node_name=node_name),
        Replica(
            store, accounts, policy=POLICY, limits=LIMITS, clock_ms=clock, count_online=count_online
        ),
        observers,
    )


@pytest.fixture
def alice(accounts: Accounts, clock: Clock) -> Identity:
    return _create(accounts, "alice", clock)


def _create(accounts: Accounts, handle: str, clock: Clock) -> Identity:
    identity = Identity.generate()
    request = sign_account(identity, handle, handle.title())
    body = pb.Account.FromString(request.account)
    body.created_at_ms = clock.now
    raw = body.SerializeToString()
    from client_sdk.protocol.signing import CREATE_ACCOUNT_DOMAIN

    asyncio.run(accounts.create(raw, identity.sign(CREATE_ACCOUNT_DOMAIN, raw)))
    return identity


def _lookup(presence: Presence, handle: str) -> pb.LookupResponse:
    return pb.LookupResponse.FromString(presence.lookup(handle))


def test_register_then_lookup_returns_the_signed_record(
    presence: Presence, alice: Identity
) -> None:
    sent = signed(alice, device_record())
    registration = presence.register("alice", sent)
    assert registration.ttl_seconds == 60
    response = _lookup(presence, "alice")
    assert response.account.handle == "alice"
    assert [d.signed for d in response.devices] == [sent]
    assert response.devices[0].expires_at_ms == NOW_MS + 60_000
    assert response.devices[0].attached_supernode == "n1"
    assert presence.online == 1


def test_ttl_is_clamped(presence: Presence, alice: Identity) -> None:
    assert (
        presence.register("alice", signed(alice, device_record(ttl_seconds=10**6))).ttl_seconds
        == 100
    )


def test_renewal_needs_a_higher_seq(
    presence: Presence, alice: Identity, recorder: Recorder
) -> None:
    presence.register("alice", signed(alice, device_record(seq=5)))
    with pytest.raises(
        FailedPrecondition, match=r"record\.seq: 5 is not greater than the stored 5"
    ):
        presence.register("alice", signed(alice, device_record(seq=5)))
    with pytest.raises(FailedPrecondition):
        presence.register("alice", signed(alice, device_record(seq=4)))
    presence.register("alice", signed(alice, device_record(seq=6)))
    assert [c for _, _, c in recorder.changes] == [Change.ONLINE, Change.RENEWED]
    assert presence.online == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"status": pb.DEVICE_STATUS_AWAY},
        {"transport_key": b"u" * 32},
        {"capabilities": ["video"]},
        {
            "endpoints": [
                pb.Endpoint(
                    address="192.0.2.9",
                    port=4000,
                    protocol=pb.TRANSPORT_PROTOCOL_UDP,
                    type=pb.CANDIDATE_TYPE_HOST,
                )
            ]
        },
    ],
)
def test_a_renewal_is_an_update_only_when_a_watcher_would_see_a_difference(
    presence: Presence, alice: Identity, recorder: Recorder, changed: dict[str, object]
) -> None:
    presence.register("alice", signed(alice, device_record(seq=1)))
    presence.register(
        "alice", signed(alice, device_record(seq=2, ttl_seconds=90, issued_at_ms=NOW_MS + 5))
    )
    presence.register("alice", signed(alice, device_record(seq=3, **changed)))
    assert [c for _, _, c in recorder.changes] == [Change.ONLINE, Change.RENEWED, Change.UPDATED]
    # Every version is served: the renewal is a write, only not a watch event.
    assert (
        _lookup(presence, "alice").devices[0].signed.record
        == device_record(seq=3, **changed).SerializeToString()
    )


def test_lease_ends_and_sweep_buries_then_purges(
    presence: Presence, alice: Identity, clock: Clock, store: Store, recorder: Recorder
) -> None:
    presence.register("alice", signed(alice, device_record(ttl_seconds=2)))
    clock.now += 1_999
    assert len(_lookup(presence, "alice").devices) == 1
    clock.now += 1
    assert _lookup(presence, "alice").devices == []  # gone before any sweep
    assert presence.sweep().expired == 1
    assert recorder.changes[-1] == ("alice", "phone", Change.EXPIRED)
    assert presence.online == 0
    slot = store.device_slot("alice", "phone")
    assert slot is not None and not slot.live and slot.seq == 1
    clock.now += POLICY.tombstone_retention_ms
    assert presence.sweep().purged == 1
    assert store.device_slot("alice", "phone") is None
    assert store.dump()["expiry"] == {}


def test_tombstone_blocks_replay_of_unregistered_record(
    presence: Presence, alice: Identity
) -> None:
    record = signed(alice, device_record(seq=3))
    presence.register("alice", record)
    assert presence.unregister("alice", "phone")
    assert _lookup(presence, "alice").devices == []
    with pytest.raises(FailedPrecondition):
        presence.register("alice", record)
    assert not presence.unregister("alice", "phone")
    presence.register("alice", signed(alice, device_record(seq=4)))
    assert len(_lookup(presence, "alice").devices) == 1


def test_renewal_moves_the_expiry_index(
    presence: Presence, alice: Identity, store: Store, clock: Clock
) -> None:
    presence.register("alice", signed(alice, device_record(seq=1, ttl_seconds=5)))
    clock.now += 4_000
    presence.register(
        "alice", signed(alice, device_record(seq=2, ttl_seconds=5, issued_at_ms=clock.now))
    )
    assert len(store.dump()["expiry"]) == 1
    clock.now += 2_000  # past the first lease, inside the second
    assert presence.sweep().expired == 0
    assert len(_lookup(presence, "alice").devices) == 1


def test_record_for_another_handle_is_denied(
    presence: Presence, accounts: Accounts, alice: Identity, clock: Clock
) -> None:
    _create(accounts, "bob", clock)
    with pytest.raises(PermissionDenied, match="belongs to 'alice'"):
        presence.register("alice", signed(alice, device_record(handle="bob")))


def test_record_signed_by_another_key_is_denied(
    presence: Presence, alice: Identity, store: Store
) -> None:
    before = store.dump()
    with pytest.raises(PermissionDenied, match="account key of 'alice'"):
        presence.register("alice", signed(Identity.generate(), device_record()))
    assert store.dump() == before


def test_skewed_records_are_refused(presence: Presence, alice: Identity) -> None:
    with pytest.raises(InvalidArgument, match="past"):
        presence.register("alice", signed(alice, device_record(issued_at_ms=NOW_MS - 31_000)))
    with pytest.raises(InvalidArgument, match="future"):
        presence.register("alice", signed(alice, device_record(issued_at_ms=NOW_MS + 31_000)))


def test_device_limit(presence: Presence, alice: Identity) -> None:
    for n in range(3):
        presence.register("alice", signed(alice, device_record(device_id=f"d{n}")))
    with pytest.raises(ResourceExhausted, match="3 devices"):
        presence.register("alice", signed(alice, device_record(device_id="d3")))
    presence.register("alice", signed(alice, device_record(device_id="d0", seq=2)))  # renewal ok


def test_lookup_unknown_and_offline(presence: Presence, alice: Identity) -> None:
    with pytest.raises(NotFound, match="no account 'nobody'"):
        presence.lookup("nobody")
    assert _lookup(presence, "alice").devices == []


def test_lookup_many(presence: Presence, accounts: Accounts, alice: Identity, clock: Clock) -> None:
    bob = _create(accounts, "bob", clock)
    presence.register("alice", signed(alice, device_record()))
    presence.register("bob", signed(bob, device_record(handle="bob", device_id="a")))
    presence.register("bob", signed(bob, device_record(handle="bob", device_id="b")))
    response = pb.LookupManyResponse.FromString(presence.lookup_many(["bob", "ghost", "alice"]))
    assert [(r.account.handle, len(r.devices)) for r in response.results] == [
        ("bob", 2),
        ("alice", 1),
    ]
    assert list(response.not_found) == ["ghost"]
    with pytest.raises(ResourceExhausted, match="at most 5"):
        presence.lookup_many(["alice"] * 6)
    with pytest.raises(InvalidField, match=r"handles\[1\]"):
        presence.lookup_many(["alice", "BAD"])


def test_duplicate_account(accounts: Accounts, alice: Identity, clock: Clock) -> None:
    with pytest.raises(AlreadyExists, match="'alice' is taken"):
        _create(accounts, "alice", clock)
    assert accounts.count() == 1


def test_online_count_survives_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "db"
    store = Store(path, block_cache_bytes=1 << 20)
    accounts = Accounts(store, limits=LIMITS, policy=POLICY, clock_ms=clock)
    identity = _create(accounts, "alice", clock)
    presence = _presence(store, accounts, clock)
    presence.register("alice", signed(identity, device_record(device_id="a")))
    presence.register("alice", signed(identity, device_record(device_id="b", ttl_seconds=1)))
    store.close()
    clock.now += 1_000
    reopened = Store(path, block_cache_bytes=1 << 20)
    again = _presence(
        reopened, Accounts(reopened, limits=LIMITS, policy=POLICY, clock_ms=clock), clock
    )
    assert again.online == 1
    reopened.close()


def test_lookup_view_matches_a_full_scan_through_every_change(
    presence: Presence, alice: Identity, store: Store, clock: Clock
) -> None:
    def served() -> list[bytes]:
        return [d.SerializeToString() for d in _lookup(presence, "alice").devices]

    def scanned() -> list[bytes]:
        return store.live_devices("alice", clock.now)

    steps = [
        lambda: presence.register("alice", signed(alice, device_record(device_id="b", seq=1))),
        lambda: presence.register("alice", signed(alice, device_record(device_id="a", seq=1))),
        lambda: presence.register(
            "alice", signed(alice, device_record(device_id="b", seq=2, ttl_seconds=3))
        ),
        lambda: presence.unregister("alice", "a"),
        lambda: presence.register("alice", signed(alice, device_record(device_id="a", seq=2))),
        lambda: presence.sweep(),
    ]
    for step in steps:
        step()
        assert served() == scanned()
    clock.now += 3_000  # b's lease ends; the view is stale until the sweep
    assert served() == scanned() and len(served()) == 1
    presence.sweep()
    assert served() == scanned() and len(served()) == 1


def test_view_cache_is_write_through(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path / "cached", block_cache_bytes=1 << 20, view_cache_bytes=1 << 20)
    accounts = Accounts(store, limits=LIMITS, policy=POLICY, clock_ms=clock)
    identity = _create(accounts, "alice", clock)
    presence = _presence(store, accounts, clock)
    assert _lookup(presence, "alice").devices == []  # read: now cached
    assert len(store.view_cache) == 1
    presence.register("alice", signed(identity, device_record(seq=1)))
    assert len(_lookup(presence, "alice").devices) == 1  # the cached view was updated
    presence.unregister("alice", "phone")
    assert _lookup(presence, "alice").devices == []
    store.close()


def test_view_cache_stays_within_budget() -> None:
    from supernode.store import ViewCache

    cache = ViewCache(budget_bytes=3 * (100 + 4 + ViewCache.OVERHEAD_BYTES))
    for n in range(5):
        cache.put(f"k{n:03d}".encode(), b"v" * 100)
    assert len(cache) == 3 and cache.used_bytes <= cache.budget_bytes
    assert cache.get(b"k000") is None and cache.get(b"k004") == b"v" * 100
    cache.put(b"k004", b"w" * 100)  # replacing does not grow it
    assert len(cache) == 3 and cache.get(b"k004") == b"w" * 100
    assert cache.get(b"k002") is not None  # now the most recently used: k003 goes first
    cache.put(b"k005", b"v" * 100)
    assert cache.get(b"k003") is None and cache.get(b"k002") is not None
    assert b"k005" in cache and len(cache) == 3
    assert ViewCache(0).get(b"x") is None


def test_a_secondary_follows_its_primary_through_catch_up(tmp_path: Path, clock: Clock) -> None:
    """What a worker process does, in one process: read from a secondary of the store,
    cache views, and apply the commit feed (catch up, then drop the changed views)."""
    primary = Store(tmp_path / "db", block_cache_bytes=1 << 20)
    commits: list[tuple[int, list[bytes]]] = []
    primary.on_commit = lambda sequence, keys: commits.append((sequence, keys))
    accounts = Accounts(primary, limits=LIMITS, policy=POLICY, clock_ms=clock)
    identity = _create(accounts, "alice", clock)
    presence = _presence(primary, accounts, clock)
    secondary = Store(tmp_path / "db", block_cache_bytes=1 << 20, view_cache_bytes=1 << 20,
                      secondary_dir=tmp_path / "secondary")  # fmt: skip
    reader = _presence(
        secondary,
        Accounts(secondary, limits=LIMITS, policy=POLICY, clock_ms=clock),
        clock,
        count_online=False,
    )
    assert _lookup(reader, "alice").devices == []  # read, and now cached
    commits.clear()
    presence.register("alice", signed(identity, device_record(seq=1)))
    ((sequence, keys),) = commits
    assert keys == [b"alice"] and sequence == primary.sequence() > 0
    assert _lookup(reader, "alice").devices == []  # not caught up: the cached view
    secondary.catch_up(keys)
    assert secondary.sequence() == sequence
    assert len(_lookup(reader, "alice").devices) == 1
    presence.unregister("alice", "phone")
    secondary.catch_up(None)  # unknown changes: every cached view goes
    assert _lookup(reader, "alice").devices == [] and len(secondary.view_cache) == 1
    with pytest.raises(StoreError, match="read-only"):
        secondary.put_meta("x", b"y")
    secondary.close()
    primary.close()


@given(st.lists(st.sampled_from(["alice", "bob", "carol", "BAD!"]), max_size=30))
def test_each_handle_once_in_request_order_at_its_first_index(handles: list[str]) -> None:
    first = first_positions(handles)
    assert list(first) == list(dict.fromkeys(handles))
    for handle, index in first.items():
        assert handles[index] == handle and handle not in handles[:index]


def test_a_keepalive_extends_the_lease_of_the_same_record_without_a_watch_event(
    presence: Presence, alice: Identity, clock: Clock, recorder: Recorder
) -> None:
    sent = signed(alice, device_record(seq=4, ttl_seconds=60))
    presence.register("alice", sent)
    clock.now += 40_000
    granted = presence.keep_alive("alice", "phone", 4)
    assert (granted.expires_at_ms, granted.ttl_seconds) == (clock.now + 60_000, 60)
    [device] = _lookup(presence, "alice").devices
    assert device.signed == sent and device.expires_at_ms == clock.now + 60_000
    assert device.attached_supernode == "n1"
    assert [c for _, _, c in recorder.changes] == [Change.ONLINE, Change.RENEWED]
    # Past the first lease's end, the device is still online: the extension holds.
    clock.now += 50_000
    presence.sweep()
    assert len(_lookup(presence, "alice").devices) == 1 and presence.online == 1


def test_a_keepalive_extends_only_the_live_current_record(
    presence: Presence, alice: Identity, clock: Clock
) -> None:
    def refused(handle: str, seq: int, reason: Reason) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            presence.keep_alive(handle, "phone", seq)
        assert caught.value.reason is reason

    refused("alice", 1, Reason.DEVICE_NOT_REGISTERED)
    presence.register("alice", signed(alice, device_record(seq=4, ttl_seconds=10)))
    refused("alice", 3, Reason.STALE_SEQ)  # an older record's keepalive, replayed
    refused("alice", 5, Reason.STALE_SEQ)
    refused("bob", 4, Reason.DEVICE_NOT_REGISTERED)  # another account names its own handle
    with pytest.raises(InvalidField):
        presence.keep_alive("alice", "", 4)
    clock.now += 10_000  # the lease ended (swept or not): not revived
    refused("alice", 4, Reason.LEASE_ENDED)


def test_an_unregistered_device_is_not_kept_alive_and_its_tombstone_wins(
    presence: Presence, alice: Identity, clock: Clock
) -> None:
    presence.register("alice", signed(alice, device_record(seq=4, ttl_seconds=60)))
    early = presence.replica.extension("alice", "phone", 4)  # a keepalive racing the unregister
    assert presence.unregister("alice", "phone")
    with pytest.raises(FailedPrecondition) as caught:
        presence.keep_alive("alice", "phone", 4)
    assert caught.value.reason is Reason.DEVICE_NOT_REGISTERED
    # Arriving after the tombstone (a replica that applies it late), it changes nothing.
    assert presence.replica.apply(early.write) is None
    assert _lookup(presence, "alice").devices == []
