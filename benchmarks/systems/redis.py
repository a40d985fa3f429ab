"""Redis as a lookup baseline: the same value bytes under the same keys, read with GET/MGET.

A private ``redis-server`` (Debian's 7.0) on our own loopback port, persistence off (the
measured workloads only read; an RDB save would fork and burn CPU during loading). Clients use
``redis.asyncio`` with the hiredis parser, one connection each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from benchmarks.dataset import Dataset
from benchmarks.native_drivers import KeysByBatch, NativeWorkload
from benchmarks.redis_native import RedisDriver
from benchmarks.services import REDIS_PACKAGE, Item, ManagedServerSystem, split_target
from benchmarks.systems.base import ClientSpec

MSET_PAIRS = 1000  # pairs per MSET (~0.6 MB)
MGET_BATCHES = (10, 100)


def redis_command(binary: str, data_dir: Path, port: int, host: str) -> list[str]:
    """argv for a foreground, non-persistent Redis listening only on ``host:port``."""
    return [
        binary,
        "--bind", host,
        "--port", str(port),
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--logfile", "",
        "--loglevel", "notice",  # for the ready line; nothing more is logged while reading
    ]  # fmt: skip


def _connection(target: str) -> aioredis.Redis:
    host, port = split_target(target)
    # One connection, no pool: the benchmark counts connections explicitly.
    return aioredis.Redis(host=host, port=port, single_connection_client=True)


class RedisSystem(ManagedServerSystem):
    """A private Redis, loaded with pipelined MSETs."""

    name = "redis"
    package = REDIS_PACKAGE
    ready_line = re.compile(r"Ready to accept connections")
    log_stream = "stdout"  # --logfile "" logs to standard output

    _client: aioredis.Redis | None = None

    def command(self, binary: str, data_dir: Path, ports: Sequence[int]) -> list[str]:
        return redis_command(binary, data_dir, ports[0], self.host)

    async def _connect(self) -> None:
        self._client = _connection(self.target)

    async def _probe(self) -> None:
        await self._redis().ping()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("redis not launched")
        return self._client

    async def load_batch(self, items: Sequence[Item]) -> None:
        """All of ``items`` in one round trip: a pipeline of MSETs of ``MSET_PAIRS`` each."""
        pipe = self._redis().pipeline(transaction=False)
        for start in range(0, len(items), MSET_PAIRS):
            pipe.mset(dict(items[start : start + MSET_PAIRS]))
        await pipe.execute()

    def workloads(self) -> list[ClientSpec]:
        target = self.target
        return [
            ClientSpec("redis", "get", target),
            *(ClientSpec("redis", f"mget-{n}", target, batch=n) for n in MGET_BATCHES),
        ]

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        """GET and MGET-N under redis-benchmark, judged by Redis's INFO counts."""
        handles = {batch: [Dataset.handle(i) for i in indexes] for batch, indexes in keys.items()}
        return [
            NativeWorkload(self.name, "get", 1, RedisDriver(self.target, ("GET", *handles[1]))),
            *(
                NativeWorkload(
                    self.name, f"mget-{n}", n, RedisDriver(self.target, ("MGET", *handles[n]))
                )
                for n in MGET_BATCHES
            ),
        ]


class RedisClient:
    """One Redis connection; ``get`` (one GET per user) or ``mget-N`` (one MGET of N users)."""

    def __init__(self, spec: ClientSpec) -> None:
        if spec.workload != "get" and not spec.workload.startswith("mget-"):
            raise ValueError(f"unknown redis workload {spec.workload!r}")
        self.spec = spec
        self._mget = spec.workload.startswith("mget-")
        self._client: aioredis.Redis | None = None

    async def connect(self) -> None:
        self._client = _connection(self.spec.target)
        await self._client.ping()  # open the connection now, not inside the first timed call

    async def lookup(self, indexes: list[int]) -> None:
        """Fetch users ``indexes``; raise unless every key came back."""
        await self.fetch(indexes)

    async def fetch(self, indexes: list[int]) -> list[bytes]:
        """The stored values of users ``indexes``."""
        client = self._redis()
        keys = [Dataset.handle(index) for index in indexes]
        if self._mget:
            values = await client.mget(keys)
        else:
            values = [await client.get(key) for key in keys]
        if None in values:
            missing = sum(value is None for value in values)
            raise LookupError(f"redis returned {len(keys) - missing} of {len(keys)} keys")
        return cast(list[bytes], values)  # no None left; bytes: decode_responses is off

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("not connected")
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
