"""Real etcd for the cluster tests: one member per test, or a 3-member cluster.

etcd-server is installed by the launcher itself when missing (a fresh CI machine runs as root
without it). A machine that cannot install it fails every test here with the reason instead
of skipping: a run without etcd must not pass for one that tested the cluster.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from supernode.cluster.etcd import EtcdClient, EtcdConfig
from supernode.cluster.etcd_server import LocalEtcd
from supernode.debian import PackageError
from tests.integration.sdk_support import Clients, open_clients

ClientFactory = Callable[..., EtcdClient]


async def _started(members: int) -> LocalEtcd:
    server = LocalEtcd(members)
    try:
        await server.start()
    except PackageError as error:
        pytest.fail(f"cluster tests need etcd and could not install it: {error}")
    return server


@pytest.fixture
async def etcd() -> AsyncIterator[LocalEtcd]:
    """A fresh single-member etcd (starts in well under a second), stopped after the test."""
    server = await _started(1)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def etcd_cluster() -> AsyncIterator[LocalEtcd]:
    """A fresh 3-member etcd cluster, stopped after the test."""
    server = await _started(3)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """``connect(server, **config)``: an adapter on every endpoint of ``server``; all closed
    after the test."""
    clients: list[EtcdClient] = []

    def open_client(server: LocalEtcd, **settings: Any) -> EtcdClient:
        config = EtcdConfig(tuple(server.client_endpoints), **settings)
        client = EtcdClient(config)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
async def sdk_clients() -> AsyncIterator[Clients]:
    """SDK clients opened by a test; all closed at its end."""
    async with open_clients() as opened:
        yield opened
