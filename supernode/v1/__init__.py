"""Generated gRPC/protobuf code for the ``supernode.v1`` API.

The modules here are produced from ``protos/supernode/v1/*.proto`` by ``make gen``
(grpcio-tools) and imported by both the server and ``client_sdk``; never edit them.
"""
