"""The contract between the load generator and a system under test.

A :class:`System` runs in the orchestrating process: it installs and starts its server
process(es) on loopback, loads the data set, and describes how to reach it. Load-generator
processes cannot share objects with it, so each workload is a picklable :class:`ClientSpec`
from which a generator process builds its own :class:`LookupClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from benchmarks.dataset import Dataset


@dataclass(frozen=True)
class ClientSpec:
    """Everything a generator process needs to build a client (must pickle)."""

    system: str  # e.g. "supernode", "grpc-echo", "etcd", "redis"
    workload: str  # e.g. "lookup", "lookup-many-10", "range-serializable", "get", "mget-100"
    target: str  # host:port
    batch: int = 1  # keys per operation
    options: dict[str, str] = field(default_factory=dict)  # system-specific (token, payload size)


class LookupClient(Protocol):
    """One connection of one generator process. ``lookup`` fetches the users ``indexes``."""

    async def connect(self) -> None: ...

    async def lookup(self, indexes: list[int]) -> None: ...

    async def close(self) -> None: ...


class System(Protocol):
    name: str

    async def start(self, dataset: Dataset) -> None:
        """Start the server process(es) on loopback and load ``dataset`` into them."""

    async def stop(self) -> None:
        """Stop every process started; remove temporary data."""

    def server_pids(self) -> list[int]:
        """PIDs whose CPU time is charged to this system (server CPU-seconds per 1000 ops)."""

    def workloads(self) -> list[ClientSpec]:
        """The workloads this system offers, in the order they should run."""


def make_client(spec: ClientSpec) -> LookupClient:
    """Build the client for ``spec`` inside a generator process (imports lazily)."""
    if spec.system == "supernode":
        from benchmarks.systems.supernode import SupernodeClient

        return SupernodeClient(spec)
    if spec.system == "grpc-echo":
        from benchmarks.systems.echo import EchoClient

        return EchoClient(spec)
    if spec.system == "etcd":
        from benchmarks.systems.etcd import EtcdClient

        return EtcdClient(spec)
    if spec.system == "redis":
        from benchmarks.systems.redis import RedisClient

        return RedisClient(spec)
    raise ValueError(f"unknown system {spec.system!r}")
