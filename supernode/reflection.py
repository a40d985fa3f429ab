"""gRPC server reflection, both versions a client may ask for: ``grpc.reflection.v1`` (what
grpcurl, Postman and current gRPC libraries try first) and ``grpc.reflection.v1alpha``
(older clients, and grpcio-reflection's own ``ProtoReflectionDescriptorDatabase``).

grpcio-reflection serves v1alpha only. v1 is the same protocol renamed: every message has
the same fields under the same numbers, so one servicer (the library's, with its
descriptor-pool logic) answers both, and the v1 service reads and writes the v1alpha
message classes, which are byte for byte the v1 messages. So that a v1 client can also
describe the v1 service itself, its descriptor is derived from the library's v1alpha one
(renamed package and type references, nothing written by hand) and added to the pool the
servicer answers from.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_grpc

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"


def v1_file(pool: descriptor_pool.DescriptorPool | None = None) -> FileDescriptor:
    """``grpc/reflection/v1/reflection.proto`` in ``pool`` (the default one), added once:
    the v1alpha file renamed to the v1 package."""
    pool = pool or descriptor_pool.Default()
    try:
        return pool.FindFileByName(V1_FILE)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, f".{V1_PACKAGE}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, f".{V1_PACKAGE}.")
            method.output_type = method.output_type.replace(old, f".{V1_PACKAGE}.")
    pool.Add(proto)
    return pool.FindFileByName(V1_FILE)


def enable_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both
    reflection services."""
    v1_file()
    servicer = reflection.aio.ReflectionServicer((*service_names, V1_SERVICE, V1ALPHA_SERVICE))
    v1alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha.ServerReflectionRequest.FromString,
        response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {_METHOD: v1}),)
    )
