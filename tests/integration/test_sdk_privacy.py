"""The SDK's privacy and key rotation against a real supernode: settings as the app sets
them, and a peer's pin following the rotation while the rotated client keeps renewing."""

import time

import pytest

from client_sdk import Client, DeviceStatus, EventKind, Identity, KeyChanged, PinStore, Visibility
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, Clients
from tests.integration.waiting import eventually, within

KEY = b"\x07" * 32


async def shows(viewer: Client, handle: str, expected: list[str]) -> None:
    """Until ``viewer`` sees ``handle``'s devices as ``expected``: with ``--workers`` its
    connection may be served by a process that follows another's write within the change
    feed's lag (a node alone: at once)."""

    async def seen() -> bool:
        return [d.device_id for d in (await viewer.lookup(handle)).devices] == expected

    await eventually(seen, within=10, what=f"{viewer.handle} sees {handle}: {expected}")


async def test_set_privacy_hides_the_devices_from_all_but_contacts(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    target = supernode.grpc_target
    alice = await sdk_clients.user(target, "alice")
    bob = await sdk_clients.user(target, "bob")
    carol = await sdk_clients.user(target, "carol")
    await alice.register_device("phone", transport_key=KEY, ttl=60)
    assert (await alice.get_privacy()).visibility is Visibility.EVERYONE

    settings = await alice.set_privacy(Visibility.CONTACTS, allowed=[bob.handle])
    assert settings.seq > 0 and settings.allowed == {bob.handle}
    await shows(bob, alice.handle, ["phone"])
    await shows(carol, alice.handle, [])
    many = await carol.lookup_many([alice.handle, bob.handle])
    hidden = many[alice.handle]
    assert hidden is not None and hidden.devices == ()

    watch = bob.watch([alice.handle])
    first = (await within(anext(watch))).snapshot
    assert first is not None and [d.device_id for d in first[alice.handle].devices] == ["phone"]
    again = await alice.set_privacy(Visibility.EVERYONE, blocked=[bob.handle])
    assert again.seq > settings.seq and await alice.get_privacy() == again
    await shows(bob, alice.handle, [])
    await shows(carol, alice.handle, ["phone"])
    # bob's open watch: alice's phone goes, as a snapshot after the gap says.
    event = await within(anext(watch))
    assert event.kind is EventKind.SNAPSHOT and event.after_gap and event.snapshot is not None
    assert event.snapshot[alice.handle].devices == ()
    assert [(e.kind, e.device_id) for e in event.gap_changes] == [(EventKind.OFFLINE, "phone")]
    await watch.close()


async def test_a_peer_follows_a_rotation_and_the_client_signs_with_the_new_key(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    target = supernode.grpc_target
    alice = await sdk_clients.user(target, "alice")
    await alice.register_device("phone", transport_key=KEY, ttl=60)
    bob_pins = PinStore.in_memory()
    bob = await sdk_clients.user(target, "bob", pin_store=bob_pins)
    old_key = alice.identity.public_key
    assert (await bob.lookup(alice.handle)).account.account_key == old_key  # pinned
    watch = bob.watch([alice.handle])
    assert (await anext(watch)).kind is EventKind.SNAPSHOT

    new = Identity.generate()
    account = await alice.rotate_key(new)
    assert account.account_key == new.public_key
    assert alice.identity is new
    # bob's pin follows the chain; alice's phone was registered again with the new key
    # (the record signed by the old one would be dropped: tests/unit/test_key_rotation.py).
    await shows(bob, alice.handle, ["phone"])
    seen = await bob.lookup(alice.handle)
    assert seen.account.account_key == new.public_key
    assert bob_pins.pinned(alice.handle) == new.public_key
    await alice.update_status("phone", DeviceStatus.BUSY)  # re-registered, new key
    await shows(bob, alice.handle, ["phone"])
    seen = await bob.lookup(alice.handle)
    assert [(d.device_id, d.status) for d in seen.devices] == [("phone", DeviceStatus.BUSY)]

    # bob's open watch (ended by the rotation, resumed as a snapshot) takes the new key
    # from the chain and goes on: it shows the phone busy, signed by the new key.
    async def busy() -> None:
        for _ in range(10):
            event = await anext(watch)
            if event.kind is EventKind.SNAPSHOT:
                assert event.snapshot is not None
                devices = event.snapshot[alice.handle].devices
            else:
                devices = () if event.device is None else (event.device,)
            if any(d.status is DeviceStatus.BUSY for d in devices):
                return
        raise AssertionError("the watch never showed the phone busy")

    await within(busy())
    await watch.close()
    stored = await alice.set_privacy(Visibility.EVERYONE)  # signed with the new key
    # Another client of the account whose clock is a minute behind (within the allowed
    # skew): its first seq is below the stored one, so it reads that and goes above.
    laggard = Client(target, new, alice.handle, config=TEST_CONFIG, clock=lambda: time.time() - 60)
    try:
        again = await laggard.set_privacy(Visibility.NOBODY)
        assert again.visibility is Visibility.NOBODY and again.seq == stored.seq + 1
    finally:
        await laggard.close()
    await alice.login()  # and logs in with it

    # A client that pinned a key the chain never reached refuses the account.
    stranger_pins = PinStore.in_memory()
    stranger_pins.pin(alice.handle, Identity.generate().public_key)
    carol = await sdk_clients.user(target, "carol", pin_store=stranger_pins)
    with pytest.raises(KeyChanged):
        await carol.get_account(alice.handle)
