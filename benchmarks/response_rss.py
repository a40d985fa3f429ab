"""Peak RSS of a supernode answering one LookupMany over 1,000 distinct large accounts
(issue 16: "with large records a 2.4 KB request took RSS from 83 MB to 744 MB").

Each account has 16 devices at the record limits (16 endpoints, 16 capabilities of 64
characters: ~37 KB of answer per account, ~33 MB for all 1,000). The node's VmRSS before the
call and its VmHWM (peak) after are read from /proc. Run from the repository root:

    .venv/bin/python -m benchmarks.response_rss populate /tmp/rss-data
    cp -r /tmp/rss-data /tmp/rss-run && .venv/bin/python -m benchmarks.response_rss measure \
        /tmp/rss-run [serve flags, e.g. --limits-max-response-bytes 1073741824]

(copy the data for each run: a measured node's own account lands in it.)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import grpc

from client_sdk.identity import Identity
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.transport import DirectoryConnection
from tests.integration.process import SupernodeProcess
from tests.integration.records import device

USERS, DEVICES, AT_ONCE = 1000, 16, 20
LEASE = ("--lease-max-ttl-seconds", "86400")
ENDPOINT = pb.Endpoint(
    address="2001:db8:ffff:ffff:ffff:ffff:ffff:fff0",
    port=65535,
    protocol=pb.TRANSPORT_PROTOCOL_UDP,
    type=pb.CANDIDATE_TYPE_SERVER_REFLEXIVE,
)


def memory_mb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


async def one_user(target: str, n: int) -> None:
    async with DirectoryConnection(target) as conn:
        identity, handle = Identity.generate(), f"large-{n:04d}"
        await conn.create_account(identity, handle, "x" * 64)
        await conn.login(identity, handle)
        for d in range(DEVICES):
            record = device(
                identity,
                handle,
                f"{d:02d}" + "d" * 62,
                ttl=3600,
                endpoints=[ENDPOINT] * 16,
                capabilities=[f"{c:02d}" + "c" * 62 for c in range(16)],
            )
            await conn.register_device(record)


async def populate(data: Path) -> None:
    node = SupernodeProcess(data, *LEASE).start()
    try:
        for start in range(0, USERS, AT_ONCE):
            await asyncio.gather(
                *(one_user(node.grpc_target, n) for n in range(start, start + AT_ONCE))
            )
    finally:
        node.terminate()


async def measure(data: Path, flags: list[str]) -> str:
    node = SupernodeProcess(data, *LEASE, *flags).start()
    assert node.process is not None
    pid = node.process.pid
    unlimited = [("grpc.max_receive_message_length", -1)]
    try:
        async with DirectoryConnection(node.grpc_target, options=unlimited) as conn:
            identity = Identity.generate()
            await conn.create_account(identity, "measurer")
            await conn.login(identity, "measurer")
            await conn.lookup("large-0000")
            before = memory_mb(pid)
            handles = [f"large-{n:04d}" for n in range(USERS)]
            size = pb.LookupManyRequest(handles=handles).ByteSize()
            started = time.perf_counter()
            try:
                answer = await conn.lookup_many(handles)
                outcome = (
                    f"answer {answer.ByteSize()} B, {len(answer.results)} results, "
                    f"{len(answer.unanswered)} unanswered"
                )
            except grpc.aio.AioRpcError as error:
                outcome = f"{error.code().name}: {(error.details() or '')[:80]}"
            took = time.perf_counter() - started
            after = memory_mb(pid)
            return (
                f"flags {flags}: request {size} B, {outcome}, {took:.2f} s; RSS before "
                f"{before['VmRSS']} MB, peak {after['VmHWM']} MB, after {after['VmRSS']} MB"
            )
    finally:
        node.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["populate", "measure"])
    parser.add_argument("data", type=Path, help="the node's data directory")
    parser.add_argument("serve_flags", nargs=argparse.REMAINDER, help="more serve flags")
    arguments = parser.parse_args()
    if arguments.what == "populate":
        asyncio.run(populate(arguments.data))
    else:
        print(asyncio.run(measure(arguments.data, arguments.serve_flags)))


if __name__ == "__main__":
    main()
