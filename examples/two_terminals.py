"""Two terminals, two users: Bob's devices come and go, Alice watches them.

    .venv/bin/python examples/two_terminals.py bob     # terminal 1
    .venv/bin/python examples/two_terminals.py alice   # terminal 2 (either may start first)

Options: ``--target HOST:PORT`` (default ``$SUPERNODE_TARGET`` or 127.0.0.1:7700),
``--home DIR`` where each user's key and pins are kept (default ~/.supernode-example),
``--name`` / ``--peer`` to pick other handles, ``--tablet-ttl`` for Bob's tablet lease.

What it shows, as an app would do it:

- The identity is created once and saved (``Identity.save``, mode 0600), loaded on every
  later run (``Identity.load``); account keys of others are pinned in a file
  (``PinStore.file``), so a changed key is caught across runs (``KeyChanged``).
- The two sides coordinate through the directory only: Bob waits until Alice's laptop is
  online (she registers it once her watch is running), then registers a phone and a
  tablet.
- Lease expiry versus unregister: the tablet's app quits without unregistering (as after
  a crash), so its lease runs out and watchers see ``OfflineReason.EXPIRED``; the phone
  unregisters, and they see ``UNREGISTERED`` at once.
- ``after_gap``: when a watch reconnects and cannot resume (the supernode restarted), it
  delivers a fresh snapshot with the changes missed meanwhile in ``gap_changes``; both
  sides replay those, so no change is lost.
- ``lookup_many`` for several handles at once (``None`` for a handle with no account), and
  errors caught by class: ``NotFound``, ``Unavailable`` (no supernode), ``AlreadyExists``
  (the handle belongs to another key), ``KeyChanged``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from client_sdk import (
    AlreadyExists,
    Client,
    ClientConfig,
    EventKind,
    Identity,
    KeyChanged,
    NotFound,
    OfflineReason,
    PinStore,
    PresenceEvent,
    SupernodeError,
    Tls,
    Unavailable,
    Watch,
)

# TLS verified with the CA file in $SUPERNODE_CA (`supernode certs` writes certs/sdk-ca.pem);
# without it, plaintext, as `make run`'s development node on loopback serves.
CA = os.environ.get("SUPERNODE_CA")
CONFIG = ClientConfig(tls=Tls(ca_file=CA)) if CA else ClientConfig(plaintext=True)

NOBODY = "nobody-here"
WHY_OFFLINE = {
    OfflineReason.UNREGISTERED: "unregistered (signed off)",
    OfflineReason.EXPIRED: "lease expired (the app crashed or lost its network)",
    OfflineReason.UNKNOWN: "gone while we were disconnected",
}


def open_identity(home: Path, name: str) -> Identity:
    """The user's account key: created and saved on the first run, loaded afterwards."""
    key_file = home / f"{name}.key"
    if key_file.exists():
        print(f"{name}: loaded identity from {key_file}")
        return Identity.load(key_file)
    identity = Identity.generate()
    identity.save(key_file)  # 0600: it is the account
    print(f"{name}: created identity in {key_file}")
    return identity


def describe(event: PresenceEvent) -> str:
    if event.kind is EventKind.OFFLINE:
        assert event.reason is not None
        return f"{event.handle}/{event.device_id} offline: {WHY_OFFLINE[event.reason]}"
    assert event.device is not None
    return f"{event.handle}/{event.device_id} {event.kind.value}: {event.device.status.value}"


async def changes(watch: Watch, me: str) -> AsyncIterator[PresenceEvent]:
    """The watch's events, with a snapshot after a gap replaced by what it says changed
    meanwhile (``gap_changes``): code that follows per-device events misses nothing."""
    async for event in watch:
        if event.kind is EventKind.SNAPSHOT and event.after_gap:
            print(f"{me}: reconnected after a gap; {len(event.gap_changes)} change(s) missed")
            for change in event.gap_changes:
                yield change
        else:
            yield event


async def until(
    events: AsyncIterator[PresenceEvent], me: str, wanted: Callable[[PresenceEvent], bool]
) -> PresenceEvent:
    """Print events as they come until one is ``wanted``."""
    async for event in events:
        if event.kind is not EventKind.SNAPSHOT:
            print(f"{me} sees {describe(event)}")
        if wanted(event):
            return event
    raise RuntimeError("the watch ended")


async def bob(args: argparse.Namespace, client: Client) -> None:
    me, peer = client.handle, args.peer
    await client.create_account(me.title())  # idempotent for the same key: reruns work

    def alice_online(event: PresenceEvent) -> bool:
        if event.kind is EventKind.SNAPSHOT:
            return event.snapshot is not None and bool(
                event.snapshot.get(peer) and event.snapshot[peer].devices
            )
        return event.kind is EventKind.ONLINE and event.handle == peer

    async with client.watch([peer, me]) as watch:
        events = changes(watch, me)
        print(f"{me}: waiting for {peer} to come online")
        await until(events, me, alice_online)
        print(f"{me}: {peer} is watching")

        phone_key = Identity.generate().public_key  # each device's QUIC key; keep it with it
        await client.register_device("phone", transport_key=phone_key, ttl=60)
        # The tablet runs its own client; it quits without unregistering, as a crash would.
        tablet_config = dataclasses.replace(CONFIG, unregister_on_close=False)
        async with Client(args.target, client.identity, me, config=tablet_config) as tablet:
            granted = await tablet.register_device(
                "tablet", transport_key=Identity.generate().public_key, ttl=args.tablet_ttl
            )
        print(f"{me}: the tablet quit without unregistering; lease ends in {granted.ttl_seconds} s")
        await until(
            events,
            me,
            lambda e: e.kind is EventKind.OFFLINE and (e.handle, e.device_id) == (me, "tablet"),
        )
        await client.unregister_device("phone")
        await until(events, me, lambda e: e.kind is EventKind.OFFLINE and e.handle == peer)
    print(f"{me}: {peer} signed off; bye")


async def alice(args: argparse.Namespace, client: Client) -> None:
    me, peer = client.handle, args.peer
    await client.create_account(me.title())
    gone: dict[str, OfflineReason] = {}
    async with client.watch([peer]) as watch:
        async for event in changes(watch, me):
            if event.kind is EventKind.SNAPSHOT:
                assert event.snapshot is not None
                presence = event.snapshot.get(peer)
                online = [d.device_id for d in presence.devices] if presence else []
                print(f"{me}: watching {peer}, online now: {online}")
                # Registering tells Bob (who watches us) that our watch is running.
                await client.register_device("laptop", transport_key=Identity.generate().public_key)
                continue
            print(f"{me} sees {describe(event)}")
            if event.kind is EventKind.OFFLINE and event.reason is not None:
                gone[event.device_id] = event.reason
            if {"phone", "tablet"} <= set(gone):
                break

    found = await client.lookup_many([peer, NOBODY])  # one round trip, verified records
    for handle, presence in found.items():
        state = "no such account" if presence is None else f"{len(presence.devices)} device(s)"
        print(f"{me}: lookup_many {handle}: {state}")
    try:
        await client.lookup(NOBODY)
    except NotFound as exc:
        print(f"{me}: lookup {NOBODY}: NotFound ({exc.message})")


async def run(args: argparse.Namespace, identity: Identity, pins: PinStore) -> None:
    async with Client(args.target, identity, args.name, pin_store=pins, config=CONFIG) as client:
        await (bob if args.role == "bob" else alice)(args, client)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", choices=["alice", "bob"])
    parser.add_argument("--target", default=os.environ.get("SUPERNODE_TARGET", "127.0.0.1:7700"))
    parser.add_argument("--home", default="~/.supernode-example")
    parser.add_argument("--name", help="this user's handle (default: the role)")
    parser.add_argument("--peer", help="the other user's handle (default: the other role)")
    parser.add_argument("--tablet-ttl", type=int, default=10, help="seconds (bob)")
    args = parser.parse_args(argv)
    args.name = args.name or args.role
    args.peer = args.peer or ("bob" if args.role == "alice" else "alice")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    home = Path(args.home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    identity = open_identity(home, args.name)
    pins = PinStore.file(home / f"{args.name}-pins.json")  # keys of others, across runs
    try:
        asyncio.run(run(args, identity, pins))
    except Unavailable as exc:
        print(
            f"{args.name}: no supernode answered at {args.target}: {exc.message}", file=sys.stderr
        )
        print("start one first: make run", file=sys.stderr)
        return 2
    except AlreadyExists:
        print(f"{args.name}: the handle belongs to another key: use its --home or a --name")
        return 1
    except KeyChanged as exc:
        print(f"{args.name}: the key of {exc.handle} changed since it was pinned; if they")
        print(f"confirm a new key, remove its pin from {args.home}/{args.name}-pins.json")
        return 1
    except SupernodeError as exc:  # the rest of the SDK's hierarchy: report, by class
        print(f"{args.name}: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
