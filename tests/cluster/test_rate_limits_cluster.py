"""Rate limits hold cluster-wide: each of N live nodes enforces 1/N of a limit, so a
caller spreading its calls over every node gets the configured limit in total, never N
times it (docs/cluster.md, "Rate limits")."""

from pathlib import Path

import grpc
import pytest

from client_sdk.transport import DirectoryConnection
from tests.cluster.harness import running_cluster
from tests.integration.conftest import new_user
from tests.integration.metrics import sample
from tests.integration.waiting import eventually


async def test_an_account_limit_is_not_multiplied_by_the_nodes(tmp_path: Path) -> None:
    async with running_cluster(
        tmp_path,
        2,
        "--rate-enabled",  # the harness turns limits off; later flags win
        "--rate-search-per-account-burst", "6",
        "--rate-search-per-account-per-second", "0.001",
    ) as cluster:  # fmt: skip
        for index in range(2):
            node = cluster.node(index)

            async def halved(node: object = node) -> bool:
                return sample(node.metrics(), "supernode_rate_limit_share") == 0.5  # type: ignore[attr-defined]

            await eventually(halved, what="each node enforcing half")
        async with (
            DirectoryConnection(cluster.target(0)) as first,
            DirectoryConnection(cluster.target(1)) as second,
        ):
            identity = await new_user(first, "spread")

            async def mirrored() -> bool:  # the account reaches the other node's store
                try:
                    await second.get_account("spread")
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(mirrored, what="the account on the second node")
            await second.login(identity, "spread")
            passed = 0
            for _ in range(6):  # alternate: 3 on each node
                for conn in (first, second):
                    try:
                        await conn.search("sp")
                        passed += 1
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert passed == 6  # the configured burst in total, not 12
            with pytest.raises(grpc.aio.AioRpcError):
                await first.search("sp")
