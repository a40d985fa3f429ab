"""h2load against a real single supernode: Lookup loaded for two seconds yields figures the
server's counters confirm, and calls the server refuses (no token, a malformed request) come
out as a failed point although h2load saw HTTP 200 for each. redis-benchmark against a real
Redis likewise: figures Redis's INFO confirms, a failed point for a missing key (a nil
reply, which redis-benchmark counts as done) and no point at all for an error reply.
Timings are never asserted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from benchmarks.dataset import Dataset
from benchmarks.native import (
    NativeError,
    NativePoint,
    NativeRun,
    NativeTarget,
    metrics_url,
    run_many,
)
from benchmarks.native_phase import native_keys
from benchmarks.redis_native import RedisDriver
from benchmarks.systems.etcd import EtcdSystem
from benchmarks.systems.grpc_raw import bearer, encode_lookup
from benchmarks.systems.redis import RedisSystem
from benchmarks.systems.supernode import PRESENCE, SupernodeSystem

pytestmark = pytest.mark.slow
LOOKUP = f"{PRESENCE}/Lookup"
USERS = 50
SECONDS = 2.0


@pytest.fixture
async def node() -> AsyncIterator[SupernodeSystem]:
    system = SupernodeSystem()
    await system.start(Dataset(USERS))
    try:
        yield system
    finally:
        await system.stop()


def _target(node: SupernodeSystem, request: bytes, *, token: bool = True) -> NativeTarget:
    (spec, *_) = node.workloads()  # batch 1: Lookup
    return NativeTarget(
        target=spec.target,
        method_path=LOOKUP,
        request=request,
        metadata=bearer(spec.options["token"]) if token else (),
        metrics_url=metrics_url(node.metrics_address),
    )


CLIENTS, STREAMS = 2, 4


async def _load(target: NativeTarget, warmup_s: float) -> NativeRun:
    return await run_many(
        [target], duration_s=SECONDS, warmup_s=warmup_s, clients=CLIENTS, streams=STREAMS
    )


async def test_lookups_under_h2load_are_all_answered_ok_by_the_server(
    node: SupernodeSystem,
) -> None:
    run = await _load(_target(node, encode_lookup([7])), warmup_s=0)
    (point,) = run.points
    assert point.failure is None
    assert point.done > 0 and point.http_succeeded == point.done
    # Without warm-up the server counts every call h2load finished, plus at most those in
    # flight when it stopped (answered, but no longer awaited), and refuses none.
    assert point.server_ok is not None
    assert point.done <= point.server_ok <= point.done + CLIENTS * STREAMS
    assert point.server_errors == 0
    assert point.req_per_s > 0 and 0 < point.p50_ms <= point.p99_ms <= point.p999_ms
    assert point.p999_ms <= point.max_ms
    assert run.total.done == point.done and run.total.failure is None


@pytest.mark.parametrize(
    ("request_bytes", "token"),
    [(encode_lookup([7]), False), (b"\xff\xff\xff", True)],
    ids=["no-token", "malformed-request"],
)
async def test_calls_the_server_refuses_make_a_failed_point_despite_http_200(
    node: SupernodeSystem, request_bytes: bytes, token: bool
) -> None:
    run = await _load(_target(node, request_bytes, token=token), warmup_s=0.5)
    (point,) = run.points
    assert point.done > 0 and point.http_succeeded == point.done  # h2load saw only success
    assert point.server_ok == 0 and point.server_errors is not None and point.server_errors > 0
    assert point.failed and run.total.failed


# ---------------------------------------------------------------------- Redis, natively


@pytest.fixture
async def redis() -> AsyncIterator[RedisSystem]:
    system = RedisSystem()
    await system.start(Dataset(USERS))
    try:
        yield system
    finally:
        await system.stop()


async def _redis_point(system: RedisSystem, command: tuple[str, ...]) -> NativePoint:
    return await RedisDriver(system.target, command).run(
        clients=4, streams=1, duration_s=0.3, warmup_s=0
    )


async def test_redis_benchmark_gets_figures_redis_confirms(redis: RedisSystem) -> None:
    (get, mget_10, _) = redis.native_workloads(native_keys(USERS, 1, "uniform"))
    for workload in (get, mget_10):
        point = await workload.driver.run(clients=4, streams=1, duration_s=0.3, warmup_s=0)
        assert point.failure is None, point.failure
        # Counted over warm-up and run: every request redis-benchmark completed, and more.
        assert point.server_ok is not None and point.server_ok > point.done > 0
        assert point.server_errors == 0 and 0 < point.p50_ms <= point.p99_ms <= point.max_ms


async def test_redis_points_fail_on_a_missing_key_or_an_error_reply(redis: RedisSystem) -> None:
    present = Dataset.handle(3)
    missing = await _redis_point(redis, ("MGET", present, "no-such-user"))
    assert missing.failure is not None and "missed" in missing.failure
    # An error reply stops redis-benchmark itself: no point at all, said with Redis's error.
    with pytest.raises(NativeError, match="wrong number of arguments"):
        await _redis_point(redis, ("GET", present, present))


async def test_etcds_native_workloads_check_their_keys_are_stored() -> None:
    """etcd answers a Range of a missing key OK, so its native workloads check first."""
    etcd = EtcdSystem()
    await etcd.start(Dataset(USERS))
    try:
        workloads = etcd.native_workloads(native_keys(USERS, 1, "uniform"))
        assert [w.workload for w in workloads] == ["range-serializable", "txn-10", "txn-100"]
        for workload in workloads:
            assert workload.precheck is not None
            await workload.precheck()
        with pytest.raises(LookupError, match="holds 1 of the 2 keys"):
            await etcd.check_present([3, USERS + 5])
    finally:
        await etcd.stop()
