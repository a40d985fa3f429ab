"""Real etcd and Redis, installed, started, loaded and stopped by the benchmark's own code.

The Debian packages are installed when missing (as root), so a fresh machine runs these
tests too; an install failure fails the test with apt's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.dataset import Dataset
from benchmarks.services import ManagedServerSystem, load_items
from benchmarks.systems.base import make_client
from benchmarks.systems.etcd import EtcdClient, EtcdSystem
from benchmarks.systems.redis import RedisClient, RedisSystem
from client_sdk.protocol.v1 import directory_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a first run may apt-get install

USERS = 120  # more than the largest batch (100)
NOW_MS = 1_700_000_000_000


async def _check_workloads(system: ManagedServerSystem, dataset: Dataset) -> None:
    """Every workload's client returns the stored bytes of each user and refuses missing keys."""
    specs = system.workloads()
    assert specs and all(spec.target == system.target for spec in specs)
    for spec in specs:
        client = make_client(spec)
        assert isinstance(client, EtcdClient | RedisClient)
        await client.connect()
        try:
            for start in (0, 7, USERS - spec.batch):
                indexes = list(range(start, start + spec.batch))
                await client.lookup(indexes)
                values = await client.fetch(indexes)
                # The value is the user's LookupResponse as built at the time it was stored.
                now_ms = pb.LookupResponse.FromString(values[0]).account.created_at_ms
                expected = [dataset.user(i, now_ms).lookup_response() for i in indexes]
                assert values == expected, spec
            with pytest.raises(LookupError):
                await client.lookup([*range(spec.batch - 1), USERS + 1000])
        finally:
            await client.close()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _assert_gone(pids: list[int], dirs: list[Path]) -> None:
    for pid in pids:
        assert not _alive(pid), f"server {pid} still running"
    for directory in dirs:
        assert not directory.exists(), f"{directory} not removed"


async def test_one_pass_loads_etcd_and_redis() -> None:
    dataset = Dataset(USERS)
    systems: list[ManagedServerSystem] = [EtcdSystem(), RedisSystem()]
    pids: list[int] = []
    dirs: list[Path] = []
    try:
        for system in systems:
            await system.launch()
            pids += system.server_pids()
            dirs.append(system.data_dir)
        assert len(pids) == 2 and all(map(_alive, pids))
        pairs = (
            (Dataset.handle(i), dataset.user(i, NOW_MS).lookup_response()) for i in range(USERS)
        )
        assert await load_items(systems, pairs, batch=50) == USERS
        for system in systems:
            await _check_workloads(system, dataset)
    finally:
        for system in systems:
            await system.stop()
    _assert_gone(pids, dirs)
    assert all(system.server_pids() == [] for system in systems)


@pytest.mark.parametrize("system_class", [EtcdSystem, RedisSystem])
async def test_start_loads_the_cached_dataset(
    system_class: type[EtcdSystem] | type[RedisSystem], tmp_path: Path
) -> None:
    dataset = Dataset(USERS)
    system = system_class(cache_dir=tmp_path)
    await system.start(dataset)
    try:
        pids, dirs = system.server_pids(), [system.data_dir]
        assert system.loaded_users == USERS
        await _check_workloads(system, dataset)
    finally:
        await system.stop()
    _assert_gone(pids, dirs)
