"""Load for the fault tests: SDK clients writing and reading, every operation in a history.

Writers are SDK clients, as an app would run them: ``register_device`` (first registration
and re-registration with a new seq), background renewals, ``unregister_device``, failing
over between the nodes. Each attempt the SDK sends reaches the history through its write
observer (``client_sdk.write_log``) with the seq it carried; an attempt without an OK may
have landed, so it is recorded ``unknown``. Readers look handles up through the SDK (ONE,
failing over, monotonic) and, at QUORUM, over raw connections, so that the server's QUORUM
read is checked without the SDK's own re-reads in between.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from dataclasses import dataclass

import grpc

from client_sdk import (
    Client,
    ClientConfig,
    Endpoint,
    EventKind,
    Identity,
    SupernodeError,
    WriteAttempt,
    WriteKind,
)
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection, now_ms
from supernode.transport import PEER_RECONNECT_OPTIONS
from tests.cluster import history as checks
from tests.cluster.test_cluster_routing import mirrored
from tests.integration.sdk_support import TEST_CONFIG, unique

DEVICES = ("phone", "tablet")
TRANSPORT_KEY = b"k" * 32
# As an app would: back within a second of a node's restart. Closing does not unregister:
# the test closes its writers before reading the final state, which must show what the
# load left (and no renewal may land after that read).
WRITER_CONFIG = dataclasses.replace(
    TEST_CONFIG, channel_options=PEER_RECONNECT_OPTIONS, unregister_on_close=False
)


class HistoryObserver:
    """The SDK's write observer, recording every attempt into a history."""

    def __init__(self, history: checks.History) -> None:
        self.history = history
        self._open: dict[int, checks.WriteToken] = {}

    def write_sent(self, attempt: WriteAttempt) -> None:
        # A keepalive is, to the checker, the register of the same seq with a later lease
        # end: acknowledged, that record must stay until then.
        kind: checks.WriteKind = (
            "unregister" if attempt.kind is WriteKind.UNREGISTER else "register"
        )
        token = self.history.invoke_write(attempt.handle, attempt.device_id, attempt.seq, kind)
        self._open[id(attempt)] = token

    def write_acknowledged(self, attempt: WriteAttempt, expires_at_ms: int | None) -> None:
        token = self._open.pop(id(attempt))
        if attempt.kind is not WriteKind.UNREGISTER:
            assert expires_at_ms is not None
            lease_end = time.monotonic() + (expires_at_ms - now_ms()) / 1000
            self.history.complete(token, "ok", expires_at=lease_end)
        else:
            self.history.complete(token, "ok")

    def write_failed(self, attempt: WriteAttempt, error: SupernodeError) -> None:
        # It may have reached a replica (or be in a hint): unknown, never "failed".
        self.history.complete(self._open.pop(id(attempt)), "unknown")


@dataclass
class User:
    handle: str
    client: Client


async def sdk_users(
    targets: list[str],
    count: int,
    history: checks.History,
    prefix: str,
    config: ClientConfig = WRITER_CONFIG,
) -> list[User]:
    """``count`` accounts, each known to every node's mirror, with an SDK client for each
    whose writes go into ``history``."""
    setup = DirectoryConnection(targets[0])
    probes = [DirectoryConnection(t) for t in targets]
    users = []
    for n in range(count):
        identity, handle = Identity.generate(), unique(f"{prefix}{n}")
        await setup.create_account(identity, handle)
        await setup.login(identity, handle)
        for probe in probes:
            probe.token = setup.token
            await mirrored(probe, handle)
        observer = HistoryObserver(history)
        client = Client(targets, identity, handle, config=config, write_observer=observer)
        users.append(User(handle, client))
    for connection in (setup, *probes):
        await connection.close()
    return users


class Load:
    """Writers and readers running until told to stop; every operation goes in the history."""

    def __init__(self, users: list[User], history: checks.History, ttl: int) -> None:
        self.users, self.history, self.ttl = users, history, ttl
        self.writes = 0
        self.rng = random.Random(7)
        self.stopping = asyncio.Event()
        # Why SDK lookups failed (kind and message), for a failing test's report.
        self.read_errors: Counter[str] = Counter()

    async def write(self, user: User) -> None:
        """One register (a new seq), or an unregister of a device this client registered.
        The SDK retries across nodes; each attempt is recorded by the observer."""
        device_id = self.rng.choice(DEVICES)
        registered = user.client.registration(device_id) is not None
        try:
            if registered and device_id == "tablet" and self.rng.random() < 0.3:
                await user.client.unregister_device(device_id)
            else:
                # A new endpoint each time, so each write is a change its watchers are told
                # of (the same record with a higher seq would be a renewal: no event).
                self.writes += 1
                endpoint = Endpoint("198.18.0.10", 1024 + self.writes % 60_000)
                await user.client.register_device(
                    device_id, transport_key=TRANSPORT_KEY, ttl=self.ttl, endpoints=[endpoint]
                )
        except SupernodeError:
            pass  # the attempts are in the history (unknown); the load goes on

    async def writer(self, user: User) -> None:
        while not self.stopping.is_set():
            await self.write(user)
            await asyncio.sleep(self.rng.uniform(0.02, 0.1))

    async def reader(self, client: Client, handles: list[str], name: str) -> None:
        while not self.stopping.is_set():
            handle = self.rng.choice(handles)
            token = self.history.invoke_read(handle, "one", name)
            try:
                presence = await client.lookup(handle)
            except Exception as exc:  # any failure is a failed lookup, counted
                self.history.complete_read(token, "failed")
                self.read_errors[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
            else:
                seen = {d.device_id: d.seq for d in presence.devices}
                self.history.complete_read(token, "ok", seen)
            await asyncio.sleep(0.01)

    async def quorum_reader(self, connections: list[DirectoryConnection]) -> None:
        while not self.stopping.is_set():
            user = self.rng.choice(self.users)
            token = self.history.invoke_read(user.handle, "quorum", "quorum-reader")
            for connection in self.rng.sample(connections, len(connections)):
                try:
                    answer = await connection.lookup(user.handle, deadline=5, quorum=True)
                except grpc.aio.AioRpcError:
                    continue
                seen = {}
                for served in answer.devices:
                    record = pb.DeviceRecord.FromString(served.signed.record)
                    seen[record.device_id] = record.seq
                self.history.complete_read(token, "ok", seen)
                break
            else:
                self.history.complete_read(token, "failed")
            await asyncio.sleep(0.02)

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Stop the load, then the writers' clients (their renewals with them)."""
        self.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for user in self.users:
            await user.client.close()


async def readers(targets: list[str], count: int, prefix: str) -> list[Client]:
    """SDK clients that only look others up (each with its own account)."""
    made = []
    for n in range(count):
        client = Client(targets, Identity.generate(), unique(f"{prefix}{n}"), config=TEST_CONFIG)
        await client.create_account()
        made.append(client)
    return made


async def quorum_connections(targets: list[str]) -> list[DirectoryConnection]:
    """Raw connections, one per node, logged in as a fresh account, for QUORUM reads."""
    connections = [DirectoryConnection(t) for t in targets]
    identity, handle = Identity.generate(), unique("quorum")
    await connections[0].create_account(identity, handle)
    await connections[0].login(identity, handle)
    for connection in connections[1:]:
        connection.token = connections[0].token
        await mirrored(connection, handle)
    return connections


class Watcher:
    """An SDK watch over the users' handles, folded into what it says each device is now:
    (handle, device) -> the seq it last saw live, or None once told the device went away.
    After the load, the view must match the replicas: a watcher that missed a change would
    be left with an older seq, or a device that is gone."""

    def __init__(self, client: Client, handles: list[str]) -> None:
        self.client, self.handles = client, handles
        self.view: dict[tuple[str, str], int | None] = {}
        self.events = 0
        self.gaps = 0

    async def run(self) -> None:
        async for event in self.client.watch(self.handles):
            self.events += 1
            if event.kind is EventKind.SNAPSHOT:
                self.gaps += event.after_gap
                assert event.snapshot is not None
                for handle in self.handles:
                    for key in [k for k in self.view if k[0] == handle]:
                        self.view[key] = None
                    presence = event.snapshot.get(handle)
                    for device in () if presence is None else presence.devices:
                        self.view[(handle, device.device_id)] = device.seq
            elif event.kind is EventKind.OFFLINE:
                self.view[(event.handle, event.device_id)] = None
            else:
                assert event.device is not None
                self.view[(event.handle, event.device_id)] = event.device.seq

    def differences(self, final: dict[checks.Key, checks.Observed]) -> list[str]:
        """Where the view disagrees with the replicas' merged final state."""
        wrong = []
        for key, (seq, tombstone) in sorted(final.items()):
            expected = None if tombstone else seq
            if self.view.get(key) != expected:
                wrong.append(f"{key}: watcher says {self.view.get(key)}, replicas {expected}")
        return wrong
