"""The framework ceiling: a bare ``grpc.aio`` server that answers every call with fixed bytes.

Same framework, options, event loop (uvloop) and raw-bytes generic handlers as the
supernode, but no parsing, no authentication, no storage and no metrics: whatever the
supernode achieves is a fraction of what this achieves on the same machine in the same run.
Requests carry the same body and headers as the supernode clients' calls; replies are sized
like the supernode's answers (mean lookup response of the data set, and
``LookupManyResponse`` of 10 and 100 of them), so batch workloads have a ceiling too.

One concession to measurement: the native generator (:mod:`benchmarks.native`) sees only
HTTP status, so the server counts the calls it answered, per method, and serves the counts
as ``echo_requests_total{method, code="OK"}`` on a Prometheus endpoint of its own (a
daemon thread, idle between scrapes). On the hot path that is one dict increment per call:
1M increments took 0.17 s in CPython 3.11 on the busy 2-core machine, so ~0.2 µs against
the ~250 µs a call costs this server (under 0.1 %); the ceiling stays a ceiling.

Run as ``python -m benchmarks.systems.echo --port 0 --payload 1=578 --payload 10=5810``;
it prints ``{"port": N, "metrics": M}`` on stdout once it is serving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from collections.abc import Iterator

import grpc
from prometheus_client.core import CollectorRegistry, CounterMetricFamily
from prometheus_client.exposition import start_http_server

from benchmarks import generate
from benchmarks.dataset import Dataset
from benchmarks.native import CallCounter, metrics_url
from benchmarks.native_drivers import GrpcDriver, KeysByBatch, NativeWorkload
from benchmarks.systems.base import ClientSpec
from benchmarks.systems.grpc_raw import SERVER_OPTIONS, RawUnaryClient, bearer, request_encoder
from benchmarks.systems.process import ServerProcess
from client_sdk.protocol import wire

SERVICE = "bench.Echo"
BATCHES = (1, 10, 100)
# Sent like the supernode clients' bearer token (same header, about the same length: a
# session token for a 12-character handle is 82 characters), so the calls on the wire
# differ only in what the server does with them. The echo server never reads it.
_TOKEN = "e" * 82
_READY = re.compile(r'\{"port": (\d+), "metrics": (\d+)\}')
# Its call counter: the labels of the supernode's own (benchmarks.native.SUPERNODE_CALLS).
CALLS_METRIC = "echo_requests"


def method_name(batch: int) -> str:
    return f"Echo{batch}"


def workload_name(batch: int) -> str:
    return "echo" if batch == 1 else f"echo-{batch}"


def reply_size(lookup_response_bytes: int, batch: int) -> int:
    """Bytes of the supernode's answer for ``batch`` handles (framing included)."""
    one = bytes(lookup_response_bytes)
    return len(one) if batch == 1 else len(wire.lookup_many_response([one] * batch, []))


class EchoClient(RawUnaryClient):
    def __init__(self, spec: ClientSpec) -> None:
        super().__init__(
            spec.target,
            f"/{SERVICE}/{method_name(spec.batch)}",
            request_encoder(spec.batch),
            bearer(_TOKEN),
        )


class EchoSystem:
    name = "grpc-echo"

    def __init__(self) -> None:
        self._process: ServerProcess | None = None
        self._target = ""
        self._sizes: dict[int, int] = {}
        self.metrics_address = ""  # host:port of its call counter (module docstring)

    async def start(self, dataset: Dataset) -> None:
        size = await asyncio.to_thread(generate.lookup_response_size, dataset)
        self._sizes = {batch: reply_size(size, batch) for batch in BATCHES}
        argv = [sys.executable, "-m", "benchmarks.systems.echo", "--port", "0"]
        for batch, nbytes in self._sizes.items():
            argv += ["--payload", f"{batch}={nbytes}"]
        self._process = ServerProcess(argv, _READY, stream="stdout")
        ready = await self._process.wait_ready(30.0)
        self._target = f"127.0.0.1:{ready.group(1)}"
        self.metrics_address = f"127.0.0.1:{ready.group(2)}"

    async def stop(self) -> None:
        if self._process is not None:
            await self._process.stop()
            self._process = None

    def server_pids(self) -> list[int]:
        return [] if self._process is None else [self._process.pid]

    def workloads(self) -> list[ClientSpec]:
        return [
            ClientSpec(
                self.name,
                workload_name(batch),
                self._target,
                batch,
                {"reply_bytes": str(self._sizes[batch])},
            )
            for batch in BATCHES
        ]

    def native_workloads(self, keys: KeysByBatch) -> list[NativeWorkload]:
        """The same request bodies as the supernode's, under h2load, judged by its counter."""
        counter = CallCounter(CALLS_METRIC)
        urls = [metrics_url(self.metrics_address)]

        def driver(batch: int) -> GrpcDriver:
            path = f"/{SERVICE}/{method_name(batch)}"
            request = request_encoder(batch)(keys[batch])
            return GrpcDriver(self._target, path, request, bearer(_TOKEN), urls, counter)

        return [NativeWorkload(self.name, workload_name(b), b, driver(b)) for b in BATCHES]


# ---------------------------------------------------------------------- the server process


def _payloads(specs: list[str]) -> dict[int, bytes]:
    payloads = {}
    for spec in specs:
        batch, _, size = spec.partition("=")
        payloads[int(batch)] = bytes(int(size))
    return payloads


class AnsweredCalls:
    """Calls answered per method: a plain dict bumped on the hot path, turned into a
    Prometheus counter only when scraped (a registered collector)."""

    def __init__(self) -> None:
        self.answered: dict[str, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            CALLS_METRIC, "Calls the echo server answered, by method.", labels=["method", "code"]
        )
        for method, count in dict(self.answered).items():
            family.add_metric([method, "OK"], count)
        yield family


async def serve(port: int, metrics_port: int, payloads: dict[int, bytes]) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    calls = AnsweredCalls()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(calls)
    metrics, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    handlers = {}
    for batch, payload in payloads.items():
        name = method_name(batch)
        calls.answered[name] = 0

        async def reply(
            request: bytes,
            context: object,
            payload: bytes = payload,
            name: str = name,
            answered: dict[str, int] = calls.answered,
        ) -> bytes:
            answered[name] += 1
            return payload

        handlers[name] = grpc.unary_unary_rpc_method_handler(reply)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(json.dumps({"port": bound, "metrics": metrics.server_port}), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1.0)
    metrics.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gRPC echo server: the framework ceiling")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0, help="its call counter's port")
    parser.add_argument(
        "--payload", action="append", default=[], metavar="BATCH=BYTES",
        help="reply size for method Echo<BATCH>; repeat for each batch size",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.metrics_port, _payloads(args.payload)))


if __name__ == "__main__":
    main()
