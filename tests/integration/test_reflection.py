"""Server reflection, v1 and v1alpha, on a real node, alone and with ``--workers 2`` (the
workers serve the public port too): a client of either version lists the services and
gets the protos, options included (``go_package``: what a Go client generates from)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from supernode.node import PUBLIC_SERVICES
from supernode.reflection import V1_SERVICE, V1ALPHA_SERVICE, v1_file
from tests.integration.process import SupernodeProcess

CONNECTIONS = 6  # each its own TCP connection, so the kernel spreads them over processes
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
PUBLIC = {service.full_name for service in PUBLIC_SERVICES}


def ask_v1(channel: grpc.Channel, **request: object) -> object:
    """One v1 request and its answer, with message classes of the v1 descriptor (a v1
    client's, not the v1alpha classes the server reuses)."""
    file = v1_file()
    request_class = GetMessageClass(file.message_types_by_name["ServerReflectionRequest"])
    response_class = GetMessageClass(file.message_types_by_name["ServerReflectionResponse"])
    info = channel.stream_stream(
        f"/{V1_SERVICE}/ServerReflectionInfo",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    answers = list(info(iter([request_class(**request)]), timeout=10))
    assert len(answers) == 1
    return answers[0]


def check_v1(channel: grpc.Channel) -> None:
    listed = ask_v1(channel, list_services="")
    names = {s.name for s in listed.list_services_response.service}  # type: ignore[attr-defined]
    assert PUBLIC | {V1_SERVICE, V1ALPHA_SERVICE} <= names
    answer = ask_v1(channel, file_containing_symbol="supernode.v1.PresenceService")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto  # type: ignore[attr-defined]
    ]
    directory = next(f for f in files if f.name == "supernode/v1/directory.proto")
    assert directory.options.go_package.endswith(";supernodev1")
    presence = next(s for s in directory.service if s.name == "PresenceService")
    assert "Lookup" in {m.name for m in presence.method}
    itself = ask_v1(channel, file_containing_symbol=V1_SERVICE)
    raw = itself.file_descriptor_response.file_descriptor_proto  # type: ignore[attr-defined]
    assert descriptor_pb2.FileDescriptorProto.FromString(raw[0]).package == "grpc.reflection.v1"
    missing = ask_v1(channel, file_containing_symbol="no.such.Service")
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]  # type: ignore[attr-defined]


def check_v1alpha(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    assert PUBLIC | {V1_SERVICE, V1ALPHA_SERVICE} <= set(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    presence = pool.FindServiceByName("supernode.v1.PresenceService")
    assert {"Lookup", "LookupMany", "Watch"} <= set(presence.methods_by_name)
    assert pool.FindMessageTypeByName("supernode.v1.DeviceRecord").fields_by_name["seq"]
    search = pool.FindFileByName("supernode/v1/search.proto")
    assert search.GetOptions().java_package == "io.supernode.v1"


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["one-process", "workers"])
def test_reflection_v1_and_v1alpha(
    start_supernode: Callable[..., SupernodeProcess], workers: tuple[str, ...]
) -> None:
    node = start_supernode(*workers)
    for _ in range(CONNECTIONS):
        with grpc.insecure_channel(node.grpc_target, options=OWN_CONNECTION) as channel:
            check_v1(channel)
            check_v1alpha(channel)
