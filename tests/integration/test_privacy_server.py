"""Visibility, block lists and search privacy, enforced by a real supernode.

A refused caller sees the account as offline (no devices) on Lookup, LookupMany and Watch,
and "not listening (offline)" on Connect, word for word what an offline device gives; an
allowed contact and the account itself see everything.
"""

import asyncio
from collections.abc import Callable

import grpc
import pytest

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from client_sdk.protocol.v1 import rendezvous_pb2_grpc as rrpc
from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.privacy_support import (
    CONTACTS,
    EVERYONE,
    NOBODY,
    device_ids,
    set_privacy,
)
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.waiting import eventually

Code = grpc.StatusCode


class User:
    def __init__(self, conn: DirectoryConnection, handle: str, identity: Identity) -> None:
        self.conn, self.handle, self.identity = conn, handle, identity
        self.rendezvous = rrpc.RendezvousServiceStub(conn.channel)  # type: ignore[no-untyped-call]

    @classmethod
    async def create(cls, connect: Callable[[], DirectoryConnection], handle: str) -> "User":
        conn = connect()
        identity = await new_user(conn, handle)
        await conn.register_device(device(identity, handle, "dev", seq=1, ttl=600))
        return cls(conn, handle, identity)

    async def connect_to(self, callee: "User") -> rpb.ConnectResponse:
        response: rpb.ConnectResponse = await self.rendezvous.Connect(
            rpb.ConnectRequest(handle=callee.handle, device_id="dev", from_device_id="dev",
                               payload=b"offer"),
            metadata=self.conn.metadata,
        )  # fmt: skip
        return response


async def sees(viewer: User, target: User) -> bool:
    return device_ids(await viewer.conn.lookup(target.handle)) == ["dev"]


async def settled(*views: tuple[User, User, bool]) -> None:
    """Until each viewer's connection shows the change: with ``--workers`` it may be served
    by another process than the one that took the change, which follows it within the
    change feed's lag (milliseconds); a node alone shows it at once (first check)."""
    for viewer, target, visible in views:

        async def shown(viewer: User = viewer, target: User = target, v: bool = visible) -> bool:
            return await sees(viewer, target) == v

        await eventually(shown, within=10, what=f"{viewer.handle} sees {target.handle}: {visible}")


async def sees_many(viewer: User, targets: list[User]) -> dict[str, list[str]]:
    answer = await viewer.conn.lookup_many([t.handle for t in targets] + ["nobody-here"])
    assert list(answer.not_found) == ["nobody-here"]
    assert [r.account.handle for r in answer.results] == [t.handle for t in targets]
    return {r.account.handle: device_ids(r) for r in answer.results}


async def refused_connect(caller: User, callee: User) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await caller.connect_to(callee)
    assert caught.value.code() == Code.FAILED_PRECONDITION
    return caught.value.details() or ""


async def test_visibility_and_block_list_on_every_presence_call(
    connect: Callable[[], DirectoryConnection], supernode: SupernodeProcess
) -> None:
    alice = await User.create(connect, "alice")
    bob = await User.create(connect, "bob")  # alice's contact
    carol = await User.create(connect, "carol")  # a stranger
    assert await sees(carol, alice)  # no settings: everyone

    await set_privacy(alice.conn, alice.identity, "alice", 1, CONTACTS, allowed=["bob"])
    await settled((carol, alice, False), (bob, alice, True), (alice, alice, True))
    stranger_view = await carol.conn.lookup("alice")
    assert stranger_view.account.handle == "alice" and not stranger_view.devices
    assert (await carol.conn.get_account("alice")).handle == "alice"  # existence is public
    assert await sees_many(carol, [alice, bob]) == {"alice": [], "bob": ["dev"]}
    assert await sees_many(bob, [alice, carol]) == {"alice": ["dev"], "carol": ["dev"]}
    quorum = await carol.conn.lookup("alice", quorum=True)
    assert not quorum.devices

    # Connect: the stranger gets exactly what an offline device gives, and alice hears
    # nothing; bob's offer reaches her Listen stream.
    listening = alice.rendezvous.Listen(rpb.ListenRequest(device_id="dev"),
                                        metadata=alice.conn.metadata)  # fmt: skip
    assert (await listening.read()).HasField("ready")
    refused = await refused_connect(carol, alice)
    assert refused == "device_id: alice/dev is not listening (offline)"
    offline = await refused_connect(alice, carol)  # carol does not listen: the same words
    assert offline == "device_id: carol/dev is not listening (offline)"
    offering = asyncio.create_task(bob.connect_to(alice))
    signal = await listening.read()
    assert signal.offer.from_handle == "bob"  # carol's refused offer never arrived
    await alice.rendezvous.Answer(rpb.AnswerRequest(offer_id=signal.offer.offer_id,
                                                    payload=b"answer"),
                                  metadata=alice.conn.metadata)  # fmt: skip
    assert (await offering).payload == b"answer"
    listening.cancel()

    # A block beats visibility EVERYONE.
    await set_privacy(alice.conn, alice.identity, "alice", 2, EVERYONE, blocked=["bob"])
    await settled((carol, alice, True), (bob, alice, False))
    await refused_connect(bob, alice)

    # NOBODY: no one but alice.
    await set_privacy(alice.conn, alice.identity, "alice", 3, NOBODY, allowed=["bob"])
    await settled((bob, alice, False), (carol, alice, False), (alice, alice, True))
    assert (await alice.conn.get_privacy()).visibility == NOBODY
    assert (await bob.conn.get_privacy()).seq == 0  # never set: the default
    if not supernode.workers:  # with workers, lookups are counted where they were served
        metrics = supernode.metrics()
        hidden = {m: sample(metrics, "supernode_privacy_hidden_total", method=m)
                  for m in ("Lookup", "LookupMany", "Connect")}  # fmt: skip
        assert hidden == {"Lookup": 6, "LookupMany": 1, "Connect": 2}


async def test_watch_shows_refused_handles_offline_and_follows_changes(
    connect: Callable[[], DirectoryConnection],
) -> None:
    alice = await User.create(connect, "alice")
    bob = await User.create(connect, "bob")
    carol = await User.create(connect, "carol")
    await set_privacy(alice.conn, alice.identity, "alice", 1, CONTACTS, allowed=["bob"])

    def seq_of(event: pb.WatchEvent) -> tuple[str, int]:
        change = event.change
        return change.handle, pb.DeviceRecord.FromString(change.device.signed.record).seq

    # Each watches alice and the other one, so "nothing of alice arrived" is shown by the
    # other's change arriving first (no waiting on silence).
    watches = {"bob": bob.conn.watch(["alice", "carol", "dave-is-no-one"]),
               "carol": carol.conn.watch(["alice", "bob"])}  # fmt: skip
    snapshots = {h: (await w.read()) for h, w in watches.items()}
    views = {
        h: {r.account.handle: device_ids(r) for r in e.snapshot.handles}
        for h, e in snapshots.items()
    }
    assert views == {"bob": {"alice": ["dev"], "carol": ["dev"]},
                     "carol": {"alice": [], "bob": ["dev"]}}  # fmt: skip
    assert list(snapshots["bob"].snapshot.not_found) == ["dave-is-no-one"]

    await alice.conn.register_device(device(alice.identity, "alice", "dev", seq=2, ttl=600))
    await bob.conn.register_device(device(bob.identity, "bob", "dev", seq=2, ttl=600))
    last = {"bob": await watches["bob"].read(), "carol": await watches["carol"].read()}
    assert seq_of(last["bob"]) == ("alice", 2)
    assert seq_of(last["carol"]) == ("bob", 2)  # alice's renewal withheld

    # alice blocks bob and lets everyone else in: every watch of her ends, and resuming
    # gives a snapshot of what each may see now (no backlog from before the change).
    await set_privacy(alice.conn, alice.identity, "alice", 2, EVERYONE, blocked=["bob"])
    for call in watches.values():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == Code.UNAVAILABLE
        assert "privacy settings of a watched account changed" in (caught.value.details() or "")
    positions = {h: (e.epoch, e.revision) for h, e in last.items()}
    resumed = {
        "bob": bob.conn.watch(["alice", "carol"], *positions["bob"]),
        "carol": carol.conn.watch(["alice", "bob"], *positions["carol"]),
    }
    first = {h: await c.read() for h, c in resumed.items()}
    assert all(e.HasField("snapshot") and not e.resumed for e in first.values())
    views = {
        h: {r.account.handle: device_ids(r) for r in e.snapshot.handles} for h, e in first.items()
    }
    assert views == {"bob": {"alice": [], "carol": ["dev"]},
                     "carol": {"alice": ["dev"], "bob": ["dev"]}}  # fmt: skip

    await alice.conn.register_device(device(alice.identity, "alice", "dev", seq=3, ttl=600))
    await carol.conn.register_device(device(carol.identity, "carol", "dev", seq=2, ttl=600))
    assert seq_of(await resumed["carol"].read()) == ("alice", 3)
    assert seq_of(await resumed["bob"].read()) == ("carol", 2)  # alice's renewal withheld
    for call in resumed.values():
        call.cancel()


async def test_search_never_shows_hidden_accounts(
    connect: Callable[[], DirectoryConnection],
) -> None:
    conns = {h: connect() for h in ("zoe-public", "zoe-hidden", "zoe-blocks", "zed")}
    identities = {}
    for handle, conn in conns.items():
        identities[handle] = await new_user(conn, handle)
    undiscoverable = connect()
    await undiscoverable.create_account(Identity.generate(), "zoe-shy", "Zoe Shy", False)
    await set_privacy(conns["zoe-hidden"], identities["zoe-hidden"], "zoe-hidden", 1, NOBODY)
    await set_privacy(conns["zoe-blocks"], identities["zoe-blocks"], "zoe-blocks", 1, EVERYONE,
                      blocked=["zed"])  # fmt: skip

    async def found(viewer: str) -> list[str]:
        return [a.handle for a in (await conns[viewer].search("zoe")).accounts]

    assert await found("zed") == ["zoe-public"]
    assert await found("zoe-public") == ["zoe-blocks", "zoe-public"]
    # An account finds itself whatever its settings.
    assert "zoe-hidden" in await found("zoe-hidden")


async def test_workers_enforce_settings_changed_through_any_process(
    start_supernode: Callable[..., SupernodeProcess],
) -> None:
    """With ``--workers``, Lookup and LookupMany are answered by whichever process the
    kernel gave the connection to, from a secondary store and its caches: each of them
    must follow a change of settings (the changed-key feed drops the cached state)."""
    node = start_supernode("--workers", "2")
    own = (("grpc.use_local_subchannel_pool", 1),)
    readers = [DirectoryConnection(node.grpc_target, options=own) for _ in range(16)]
    try:
        alice_conn, carol_conn = readers[0], readers[1]
        alice = await new_user(alice_conn, "alice")
        await new_user(carol_conn, "carol")
        await alice_conn.register_device(device(alice, "alice", "dev", seq=1, ttl=600))
        for reader in readers[2:]:
            reader.token = carol_conn.token

        async def carol_everywhere_sees(expected: list[str]) -> bool:
            answers = await asyncio.gather(*(r.lookup("alice") for r in readers[1:]))
            many = await asyncio.gather(*(r.lookup_many(["alice"]) for r in readers[1:]))
            return all(device_ids(a) == expected for a in answers) and all(
                device_ids(m.results[0]) == expected for m in many
            )

        await eventually(lambda: carol_everywhere_sees(["dev"]), what="alice visible")
        await set_privacy(alice_conn, alice, "alice", 1, NOBODY)
        await eventually(lambda: carol_everywhere_sees([]), what="alice hidden everywhere")
        await set_privacy(alice_conn, alice, "alice", 2, CONTACTS, allowed=["carol"])
        await eventually(lambda: carol_everywhere_sees(["dev"]), what="carol allowed")
    finally:
        for reader in readers:
            await reader.close()
