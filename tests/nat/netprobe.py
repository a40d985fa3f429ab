"""The program the NAT lab tests run inside namespaces: ``python -m tests.nat.netprobe``.

``serve`` plays the server side: the project's own STUN responder
(:class:`supernode.rendezvous.stun.StunResponder`) on one or more UDP ports, a UDP echo
port and a TCP echo port; it prints one JSON line when bound and then one JSON line per
datagram or TCP connection it gets, so a test can prove what did (or did not) arrive.

``client`` plays a device: one UDP socket, bound once, driven by JSON commands read line
by line from stdin, one JSON answer line each. Keeping a single socket across commands is
what lets a test compare the NAT mappings of several requests from the same local port.
Commands (``to`` is ``[host, port]``; ``stun`` and ``echo`` take an optional ``tries``,
one second each)::

    {"op": "stun", "to": ...}      -> {"mapped": [host, port] | null}
    {"op": "echo", "to": ...}      -> {"echoed": bool}          (UDP round trip)
    {"op": "send", "to": ...}      -> {"sent": true}            (one datagram, no answer)
    {"op": "tcp", "to": ...}       -> {"echoed": bool, "error": str | null}
    {"op": "received"}             -> {"received": [[host, port], ...]}
    {"op": "grpc_health", "target": "host:port"} -> {"status": "SERVING" | error text}

``received`` lists the sources of datagrams that were not answers to this client's own
requests (unsolicited traffic), after a short grace period for packets still in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import sys
from typing import Any, cast

from aioice import stun

from supernode.rendezvous.stun import StunResponder

Address = tuple[str, int]
ANSWER_TIMEOUT = 1.0  # per try; STUN and echo are retried, UDP may be lost under load
TRIES = 3
GRACE = 0.3


def emit(**fields: Any) -> None:
    """One JSON line on stdout, flushed: the test reads it as soon as it is written."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# server side -----------------------------------------------------------------------------


class LoggedStunResponder(StunResponder):
    """The project's responder, reporting every datagram's source."""

    def __init__(self, port: int) -> None:
        super().__init__(lambda outcome: None)
        self.port = port

    def datagram_received(self, data: bytes, addr: Address) -> None:
        emit(event="udp", service="stun", source=list(addr[:2]), port=self.port)
        super().datagram_received(data, addr)


class UdpEcho(asyncio.DatagramProtocol):
    """Sends every datagram back to where it came from, and reports it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own UDP transport does not subclass DatagramTransport; it quacks alike.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        emit(event="udp", service="echo", source=list(addr[:2]), port=self.port)
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo one TCP connection until the peer closes it."""
    emit(event="tcp", source=list(writer.get_extra_info("peername")[:2]))
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def serve(host: str, stun_ports: list[int], echo_port: int, tcp_port: int) -> None:
    """Bind everything, announce the ports, then serve until killed by the lab."""
    loop = asyncio.get_running_loop()
    bound: list[int] = []
    for port in stun_ports:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(LoggedStunResponder, port), local_addr=(host, port)
        )
        bound.append(transport.get_extra_info("sockname")[1])
    await loop.create_datagram_endpoint(lambda: UdpEcho(echo_port), local_addr=(host, echo_port))
    server = await asyncio.start_server(tcp_echo, host, tcp_port)
    emit(event="ready", stun=bound, echo=echo_port, tcp=tcp_port)
    async with server:
        await server.serve_forever()


# client side -----------------------------------------------------------------------------


class ClientSocket(asyncio.DatagramProtocol):
    """One UDP socket: answers are matched to requests, the rest counts as unsolicited."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[Any, asyncio.Future[Any]] = {}
        self.asked: set[Any] = set()  # late duplicate answers to retries are not unsolicited
        self.unsolicited: list[Address] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own UDP transport does not subclass DatagramTransport; it quacks alike.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        key: Any = ("echo", addr[:2], data)
        with contextlib.suppress(ValueError):  # not STUN: an echo answer or a knock
            key = stun.parse_message(data).transaction_id
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(stun_mapped(data) if isinstance(key, bytes) else True)
        elif key not in self.asked:
            self.unsolicited.append(addr[:2])

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors and EPERM: the request simply gets no answer

    async def ask(self, key: Any, payload: bytes, to: Address, tries: int) -> Any:
        """Send ``payload`` until the answer keyed ``key`` arrives; None after all tries."""
        assert self.transport is not None
        self.asked.add(key)
        for _ in range(tries):
            future = asyncio.get_running_loop().create_future()
            self.pending[key] = future
            self.transport.sendto(payload, to)
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    return await future
            except TimeoutError:
                self.pending.pop(key, None)
        return None


def stun_mapped(data: bytes) -> list[Any] | None:
    mapped = stun.parse_message(data).attributes.get("XOR-MAPPED-ADDRESS")
    return list(mapped) if mapped else None


async def tcp_round_trip(to: Address) -> dict[str, Any]:
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(*to)
        writer.write(b"hello over tcp")
        async with asyncio.timeout(5):
            echoed = await reader.readexactly(14)
        writer.close()
        return {"echoed": echoed == b"hello over tcp", "error": None}
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return {"echoed": False, "error": repr(exc)}


async def grpc_health(target: str) -> str:
    """Ask the supernode's gRPC health service: proves TCP reaches gRPC from here."""
    import grpc  # only this command needs grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = [("grpc.enable_http_proxy", 0)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def client(bind: str, port: int) -> None:
    """Bind one UDP socket, announce it, then answer stdin commands until stdin closes."""
    loop = asyncio.get_running_loop()
    transport, sock = await loop.create_datagram_endpoint(ClientSocket, local_addr=(bind, port))
    emit(event="ready", local=list(transport.get_extra_info("sockname")[:2]))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    serials = itertools.count()
    while line := await reader.readline():
        command = json.loads(line)
        op, to = command["op"], tuple(command.get("to") or ("", 0))
        tries = int(command.get("tries") or TRIES)
        if op == "stun":
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            emit(op=op, mapped=await sock.ask(request.transaction_id, bytes(request), to, tries))
        elif op == "echo":
            payload = b"echo %d" % next(serials)  # unique: answers are matched by payload
            emit(op=op, echoed=bool(await sock.ask(("echo", to, payload), payload, to, tries)))
        elif op == "send":
            transport.sendto(b"knock knock", to)
            emit(op=op, sent=True)
        elif op == "tcp":
            emit(op=op, **await tcp_round_trip(to))
        elif op == "received":
            await asyncio.sleep(GRACE)
            emit(op=op, received=[list(a) for a in sock.unsolicited])
        elif op == "grpc_health":
            emit(op=op, status=await grpc_health(command["target"]))
        else:
            emit(op=op, error="unknown op")
    transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="netprobe", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", required=True)
    s.add_argument("--stun-port", type=int, action="append", default=[])
    s.add_argument("--echo-port", type=int, default=7)
    s.add_argument("--tcp-port", type=int, default=7)
    c = sub.add_parser("client")
    c.add_argument("--bind", default="0.0.0.0")
    c.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.role == "serve":
        asyncio.run(serve(args.host, args.stun_port, args.echo_port, args.tcp_port))
    else:
        asyncio.run(client(args.bind, args.port))


if __name__ == "__main__":
    main()
