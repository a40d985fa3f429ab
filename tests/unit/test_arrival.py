"""The arrival stamp reaches the handler through a real grpc.aio server on loopback, with
registered method handlers (which skip the generic lookup) as every node registers them."""

import grpc

from supernode.rpc.arrival import ArrivalStamp, arrived_at


async def test_the_handler_sees_the_interceptors_stamp_and_none_leaks_out() -> None:
    seen: list[float] = []

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(arrived_at(-1.0))
        return raw

    server = grpc.aio.server(interceptors=(ArrivalStamp(),))
    methods = {"Echo": grpc.unary_unary_rpc_method_handler(handle)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", methods),))
    server.add_registered_method_handlers("t.S", methods)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary("/t.S/Echo")
            for _ in range(2):
                assert await echo(b"x") == b"x"
    finally:
        await server.stop(None)
    assert len(seen) == 2 and all(stamp > 0 for stamp in seen)
    assert seen[0] != seen[1]  # one stamp per call
    assert arrived_at(-1.0) == -1.0  # outside a call: the fallback
