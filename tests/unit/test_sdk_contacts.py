"""The contacts cache: a watch's view served only while every known lease still runs."""

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.contacts import ContactsCache
from client_sdk.types import Account, DeviceStatus, Presence
from client_sdk.types import Device as SdkDevice

NOW = 1_700_000_000_000
MARGIN = 5_000


def device(device_id: str = "phone", seq: int = 1, expires: int = NOW + 60_000) -> SdkDevice:
    return SdkDevice(
        handle="bob",
        device_id=device_id,
        seq=seq,
        issued_at_ms=NOW,
        ttl_seconds=60,
        endpoints=(),
        transport_key=b"k" * 32,
        status=DeviceStatus.ONLINE,
        capabilities=(),
        expires_at_ms=expires,
        attached_supernode="n1",
    )


ACCOUNT = Account(handle="bob", account_key=b"a" * 32, display_name="Bob", discoverable=True)


def presence(*devices: SdkDevice) -> Presence:
    return Presence(ACCOUNT, devices)


def test_a_view_whose_leases_run_is_served_as_it_is() -> None:
    cache = ContactsCache(margin_ms=MARGIN)
    watched = presence(device())
    assert cache.answer(watched, NOW) == watched
    assert cache.answer(presence(), NOW) == presence()  # offline: nothing to expire
    assert (cache.hits, cache.misses) == (2, 0)


def test_a_lease_ending_within_the_margin_sends_the_lookup_to_the_server() -> None:
    cache = ContactsCache(margin_ms=MARGIN)
    watched = presence(device("phone"), device("laptop", expires=NOW + MARGIN))
    assert cache.answer(watched, NOW) is None
    assert cache.answer(presence(device(expires=NOW - 1)), NOW) is None
    assert cache.misses == 2


def test_a_renewal_seen_by_a_lookup_extends_the_same_version_only() -> None:
    cache = ContactsCache(margin_ms=MARGIN)
    watched = presence(device(seq=3, expires=NOW + 1_000))  # the view's lease: nearly over
    assert cache.answer(watched, NOW) is None
    cache.learn(presence(device(seq=3, expires=NOW + 90_000)))  # the server's answer
    answer = cache.answer(watched, NOW)
    assert answer is not None and answer.devices[0].expires_at_ms == NOW + 90_000
    assert answer.devices[0].seq == 3  # still the watch's record, only its lease is newer
    # What the server showed of another seq says nothing about this one.
    cache.learn(presence(device(seq=4, expires=NOW + 90_000)))
    assert cache.answer(presence(device(seq=2, expires=NOW + 1_000)), NOW) is None


def test_an_older_answer_never_shortens_a_known_lease() -> None:
    cache = ContactsCache(margin_ms=MARGIN)
    cache.learn(presence(device(expires=NOW + 90_000)))
    cache.learn(presence(device(expires=NOW + 10_000)))
    answer = cache.answer(presence(device(expires=NOW)), NOW)
    assert answer is not None and answer.devices[0].expires_at_ms == NOW + 90_000


def test_the_memory_of_lease_ends_is_bounded() -> None:
    cache = ContactsCache(margin_ms=MARGIN, limit=2)
    for seq in (1, 2, 3):
        cache.learn(presence(device(seq=seq, expires=NOW + 90_000)))
    assert cache.answer(presence(device(seq=1, expires=NOW)), NOW) is None  # forgotten
    assert cache.answer(presence(device(seq=3, expires=NOW)), NOW) is not None


@given(
    view_end=st.integers(NOW - 100_000, NOW + 100_000),
    learned=st.lists(st.integers(NOW - 100_000, NOW + 100_000), max_size=4),
    now=st.integers(NOW - 100_000, NOW + 100_000),
)
def test_an_answer_never_holds_a_lease_known_to_end_within_the_margin(
    view_end: int, learned: list[int], now: int
) -> None:
    cache = ContactsCache(margin_ms=MARGIN)
    for end in learned:
        cache.learn(presence(device(expires=end)))
    answer = cache.answer(presence(device(expires=view_end)), now)
    latest = max([view_end, *learned])
    if latest > now + MARGIN:
        assert answer is not None and answer.devices[0].expires_at_ms == latest
    else:
        assert answer is None
