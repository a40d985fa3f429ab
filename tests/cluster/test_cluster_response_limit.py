"""Through a cluster too, a LookupMany answer stays within ``max_response_bytes`` (issue 16):
shares gathered from other nodes, and quorum reads, are cut the same way, the rest listed as
``unanswered``."""

from pathlib import Path

import pytest

from client_sdk.identity import Identity
from client_sdk.transport import DirectoryConnection
from tests.cluster.harness import running_cluster
from tests.integration.test_response_limit import LIMIT, register_large_devices


@pytest.mark.parametrize("replicas", ["1", "2"])  # 1: shares gathered from both nodes
async def test_cluster_lookup_many_is_bounded(tmp_path: Path, replicas: str) -> None:
    async with running_cluster(
        tmp_path,
        2,
        "--cluster-replication-factor",
        replicas,
        "--limits-max-response-bytes",
        str(LIMIT),
    ) as cluster:
        await cluster.wait_placed_on_all()
        handles = [f"wide-{n}" for n in range(4)]
        async with DirectoryConnection(cluster.target(0)) as conn:
            for handle in handles:
                identity = Identity.generate()
                await conn.create_account(identity, handle)
                await conn.login(identity, handle)
                await register_large_devices(conn, identity, handle)
            for quorum in (False, True):
                pending = [*handles, "nobody-here"]
                settled: list[str] = []
                while pending:
                    answer = await conn.lookup_many(pending, quorum=quorum)
                    assert answer.ByteSize() <= LIMIT
                    got = [r.account.handle for r in answer.results] + list(answer.not_found)
                    assert got, "every answer settles at least one handle"
                    assert sorted(got + list(answer.unanswered)) == sorted(pending)
                    settled += got
                    pending = list(answer.unanswered)
                assert sorted(settled) == sorted([*handles, "nobody-here"])
