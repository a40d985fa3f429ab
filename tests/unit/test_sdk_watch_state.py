"""The client side of the watch protocol: messages in, verified events out, positions kept."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.convert import account_from_pb
from client_sdk.errors import KeyChanged, SignatureError
from client_sdk.identity import Identity
from client_sdk.pins import PinStore
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.types import (
    Account,
    Device,
    DeviceStatus,
    EventKind,
    OfflineReason,
    Presence,
    WatchPosition,
)
from client_sdk.watch_state import WatchProtocolError, WatchState, diff_views, visible
from tests.unit.sdk_factories import account, change, lookup, resumed, served_device, snapshot

BOB = Identity.generate()
CAROL = Identity.generate()
MALLORY = Identity.generate()
ONLINE, UPDATED, OFFLINE = pb.CHANGE_KIND_ONLINE, pb.CHANGE_KIND_UPDATED, pb.CHANGE_KIND_OFFLINE


def started(*handles: str) -> WatchState:
    state = WatchState(handles or ("bob",), PinStore.in_memory())
    state.stream_opened()
    return state


def test_a_new_watch_asks_for_a_snapshot_and_gets_one_event() -> None:
    state = started("bob", "carol", "dave")
    assert state.resume_from() == ("", 0)
    [event] = state.apply(
        snapshot("e1", 5, lookup(BOB, "bob", served_device(BOB, "bob")), not_found=("dave",))
    )
    assert event.kind is EventKind.SNAPSHOT and not event.after_gap and event.gap_changes == ()
    assert event.snapshot is not None and set(event.snapshot) == {"bob"}
    assert [d.device_id for d in event.snapshot["bob"].devices] == ["phone"]
    assert event.not_found == ("dave",)
    assert event.position == WatchPosition("e1", 5)
    assert state.resume_from() == ("e1", 5)


def test_changes_become_events_in_order_and_update_the_view() -> None:
    state = started()
    state.apply(snapshot("e1", 0, lookup(BOB, "bob")))
    away = served_device(BOB, "bob", seq=2, status=pb.DEVICE_STATUS_AWAY)
    events = [
        *state.apply(change("e1", 1, "bob", "phone", ONLINE, served_device(BOB, "bob"))),
        *state.apply(change("e1", 2, "bob", "phone", UPDATED, away)),
    ]
    assert [(e.kind, e.device_id) for e in events] == [
        (EventKind.ONLINE, "phone"),
        (EventKind.UPDATED, "phone"),
    ]
    assert events[1].device is not None and events[1].device.status is DeviceStatus.AWAY
    assert state.view["bob"].devices[0].seq == 2
    [offline] = state.apply(
        change("e1", 3, "bob", "phone", OFFLINE, reason=pb.OFFLINE_REASON_EXPIRED)
    )
    assert offline.kind is EventKind.OFFLINE and offline.reason is OfflineReason.EXPIRED
    assert offline.device is None and state.view["bob"].devices == ()
    assert state.resume_from() == ("e1", 3)


def test_a_resumption_delivers_only_what_was_missed() -> None:
    state = started()
    state.apply(snapshot("e1", 0, lookup(BOB, "bob")))
    state.apply(change("e1", 1, "bob", "phone", ONLINE, served_device(BOB, "bob")))
    state.stream_opened()  # reconnect with ("e1", 1)
    assert state.apply(resumed("e1", 1)) == []
    assert state.apply(change("e1", 1, "bob", "phone", ONLINE, served_device(BOB, "bob"))) == []
    [event] = state.apply(change("e1", 2, "bob", "phone", OFFLINE))
    assert event.kind is EventKind.OFFLINE


def test_a_snapshot_after_a_gap_is_flagged_and_lists_what_changed_meanwhile() -> None:
    state = started("bob", "carol")
    state.apply(
        snapshot(
            "e1",
            0,
            lookup(BOB, "bob", served_device(BOB, "bob", "phone"), served_device(BOB, "bob", "pc")),
            lookup(CAROL, "carol", served_device(CAROL, "carol", "tab")),
        )
    )
    # The supernode restarted: a new epoch, so the reconnect gets a fresh snapshot.
    state.stream_opened()
    [event] = state.apply(
        snapshot(
            "e2",
            0,
            lookup(
                BOB, "bob", served_device(BOB, "bob", "phone", seq=9, status=pb.DEVICE_STATUS_BUSY)
            ),
            lookup(
                CAROL,
                "carol",
                served_device(CAROL, "carol", "tab"),
                served_device(CAROL, "carol", "tv"),
            ),
        )
    )
    assert event.kind is EventKind.SNAPSHOT and event.after_gap
    assert [(e.kind, e.handle, e.device_id) for e in event.gap_changes] == [
        (EventKind.OFFLINE, "bob", "pc"),
        (EventKind.UPDATED, "bob", "phone"),
        (EventKind.ONLINE, "carol", "tv"),
    ]
    assert event.gap_changes[0].reason is OfflineReason.UNKNOWN
    assert state.resume_from() == ("e2", 0)


def test_every_record_in_a_change_is_verified() -> None:
    state = started()
    state.apply(snapshot("e1", 0, lookup(BOB, "bob")))
    with pytest.raises(SignatureError):
        state.apply(change("e1", 1, "bob", "phone", ONLINE, served_device(MALLORY, "bob")))
    with pytest.raises(SignatureError):  # Bob's valid record of another device
        state.apply(change("e1", 1, "bob", "phone", ONLINE, served_device(BOB, "bob", "pc")))


def test_a_snapshot_serving_a_new_key_for_a_pinned_handle_raises_key_changed() -> None:
    pins = PinStore.in_memory()
    pins.pin("bob", BOB.public_key)
    state = WatchState(["bob"], pins)
    state.stream_opened()
    with pytest.raises(KeyChanged):
        state.apply(snapshot("e1", 0, lookup(MALLORY, "bob")))


def test_a_snapshot_with_a_handle_not_watched_is_refused() -> None:
    with pytest.raises(SignatureError, match="not watched"):
        started("bob").apply(snapshot("e1", 0, lookup(CAROL, "carol")))


def test_an_account_created_after_the_snapshot_is_learned_before_its_first_change() -> None:
    state = started("bob")
    state.apply(snapshot("e1", 0, not_found=("bob",)))
    message = change("e1", 1, "bob", "phone", ONLINE, served_device(BOB, "bob"))
    assert state.unknown_account(message) == "bob"
    state.learn_account(account_from_pb(account(BOB, "bob")))
    assert state.unknown_account(message) is None
    [event] = state.apply(message)
    assert event.kind is EventKind.ONLINE


@pytest.mark.parametrize(
    "message",
    [
        change("e1", 1, "bob", "phone", OFFLINE),  # before any snapshot
        resumed("e1", 1),  # a position this client never had
    ],
)
def test_protocol_violations_are_errors(message: pb.WatchEvent) -> None:
    with pytest.raises(WatchProtocolError):
        started().apply(message)


def test_a_change_from_another_epoch_within_a_stream_is_an_error() -> None:
    state = started()
    state.apply(snapshot("e1", 0, lookup(BOB, "bob")))
    with pytest.raises(WatchProtocolError):
        state.apply(change("e2", 1, "bob", "phone", OFFLINE))


def _device(device_id: str, seq: int) -> Device:
    # seq 1 and 2 look the same to a watcher (2 renewed 1); 3 and 4 are away.
    status = DeviceStatus.ONLINE if seq <= 2 else DeviceStatus.AWAY
    return Device("bob", device_id, seq, 0, 60, (), b"k" * 32, status, (), 0, "n1")


_views = st.dictionaries(st.sampled_from("abcd"), st.integers(1, 4), max_size=4)


@given(old=_views, new=_views)
def test_gap_changes_replayed_on_the_old_view_give_the_new_one(
    old: dict[str, int], new: dict[str, int]
) -> None:
    bob = Account("bob", b"b" * 32)

    def view(seqs: dict[str, int]) -> dict[str, Presence]:
        return {"bob": Presence(bob, tuple(_device(d, s) for d, s in sorted(seqs.items())))}

    replayed = {d.device_id: d for d in view(old)["bob"].devices}
    for event in diff_views(view(old), view(new), WatchPosition("e", 0)):
        if event.kind is EventKind.OFFLINE:
            del replayed[event.device_id]
        else:
            assert event.device is not None
            assert (event.kind is EventKind.ONLINE) == (event.device_id not in replayed)
            replayed[event.device_id] = event.device
    # The same devices, each as a watcher sees it (a renewal is no change).
    assert {d: visible(x) for d, x in replayed.items()} == {
        d: visible(_device(d, s)) for d, s in new.items()
    }


def test_the_view_is_in_sync_only_between_a_snapshot_or_resumption_and_the_stream_end() -> None:
    state = started()
    assert not state.synced
    state.apply(snapshot("e1", 3, lookup(BOB, "bob")))
    assert state.synced
    state.stream_closed()
    assert not state.synced
    state.stream_opened()
    state.apply(resumed("e1", 3))
    assert state.synced


def test_a_gap_that_only_renewed_a_device_has_no_gap_change() -> None:
    state = started()
    state.apply(snapshot("e1", 3, lookup(BOB, "bob", served_device(BOB, "bob", seq=1))))
    state.stream_closed()
    state.stream_opened()
    renewed = served_device(BOB, "bob", seq=7, ttl_seconds=90)  # same endpoints, key, status
    [event] = state.apply(snapshot("e2", 1, lookup(BOB, "bob", renewed)))
    assert event.after_gap and event.gap_changes == ()
    assert state.view["bob"].devices[0].seq == 7
    state.stream_closed()
    state.stream_opened()
    away = served_device(BOB, "bob", seq=8, status=pb.DEVICE_STATUS_AWAY)
    [event] = state.apply(snapshot("e3", 1, lookup(BOB, "bob", away)))
    assert [(e.kind, e.device_id) for e in event.gap_changes] == [(EventKind.UPDATED, "phone")]
