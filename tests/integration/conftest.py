import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from client_sdk.identity import Identity
from client_sdk.transport import DirectoryConnection
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import Clients, open_clients


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the workers run, keep only the tests whose nodes ``SUPERNODE_TEST_WORKERS`` changes.

    ``make test`` runs this suite twice, the second time with every node of ``start_supernode``
    serving through workers. A test that starts no node through that fixture (benchmarks,
    the wheel, the fuzzer's own node, the README's commands) would run exactly as it did the
    first time, so it is deselected rather than paid for twice.
    """
    if not os.environ.get("SUPERNODE_TEST_WORKERS"):
        return
    kept = [item for item in items if "start_supernode" in getattr(item, "fixturenames", ())]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def start_supernode(tmp_path: Path) -> Iterator[Callable[..., SupernodeProcess]]:
    """Start supernodes (on ``tmp_path/data`` unless told otherwise); all killed at the end."""
    started: list[SupernodeProcess] = []

    # SUPERNODE_TEST_WORKERS=N runs every node of the suite as a primary with workers.
    workers = os.environ.get("SUPERNODE_TEST_WORKERS")
    extra = ("--workers", workers) if workers else ()

    def start(
        *args: str, data_dir: Path | None = None, rate_limits: bool = False
    ) -> SupernodeProcess:
        node = SupernodeProcess(
            data_dir or tmp_path / "data", *extra, *args, rate_limits=rate_limits
        ).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


@pytest.fixture
def supernode(start_supernode: Callable[..., SupernodeProcess]) -> SupernodeProcess:
    return start_supernode("--lease-min-ttl-seconds", "1", "--sweep-interval-seconds", "0.2")


@pytest.fixture
async def connect(supernode: SupernodeProcess) -> AsyncIterator[Callable[[], DirectoryConnection]]:
    opened: list[DirectoryConnection] = []

    def open_connection() -> DirectoryConnection:
        connection = DirectoryConnection(supernode.grpc_target)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        await connection.close()


async def new_user(connection: DirectoryConnection, handle: str) -> Identity:
    """Create an account and log the connection in as it."""
    identity = Identity.generate()
    await connection.create_account(identity, handle, handle.title())
    await connection.login(identity, handle)
    return identity


@pytest.fixture
async def sdk_clients() -> AsyncIterator[Clients]:
    """SDK clients (``client_sdk.Client``) opened by a test; all closed at its end."""
    async with open_clients() as opened:
        yield opened
