"""Generated gRPC/protobuf code for the public ``supernode.v1`` API.

The modules here are produced from ``protos/supernode/v1/*.proto`` by the build (the wheel
build hook, or ``make gen`` in a checkout), with their imports pointed at this package;
never edit them.
"""
