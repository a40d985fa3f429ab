"""Nothing a client sends can crash a supernode: random bytes into every method."""

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_sdk.transport import DirectoryConnection
from tests.integration.conftest import new_user
from tests.integration.process import SupernodeProcess

METHODS = [
    "/supernode.v1.AccountService/CreateAccount",
    "/supernode.v1.AccountService/GetAccount",
    "/supernode.v1.SessionService/GetChallenge",
    "/supernode.v1.SessionService/Login",
    "/supernode.v1.PresenceService/RegisterDevice",
    "/supernode.v1.PresenceService/UnregisterDevice",
    "/supernode.v1.PresenceService/Lookup",
    "/supernode.v1.PresenceService/LookupMany",
    "/supernode.v1.SearchService/Search",
]
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupernodeProcess, str]]:
    process = SupernodeProcess(tmp_path_factory.mktemp("fuzz") / "data").start()

    async def login() -> str:
        async with DirectoryConnection(process.grpc_target) as conn:
            await new_user(conn, "fuzzer")
            assert conn.token is not None
            return conn.token

    token = asyncio.run(login())
    yield process, token
    process.kill()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300), authed=st.booleans())
def test_random_bytes_are_refused_cleanly(
    node: tuple[SupernodeProcess, str], method: str, body: bytes, authed: bool
) -> None:
    process, token = node
    metadata = (("authorization", f"Bearer {token}"),) if authed else ()
    with grpc.insecure_channel(process.grpc_target) as channel:
        call = channel.unary_unary(method)
        try:
            call(body, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            assert error.code() in REFUSALS, (method, body, error.code(), error.details())
    assert process.process is not None and process.process.poll() is None
