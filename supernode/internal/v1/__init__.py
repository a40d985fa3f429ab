"""Generated code for ``supernode.internal.v1`` (how a node's worker processes follow its
primary), built from ``protos/supernode/internal/v1/`` by ``protos/build_hook.py``; never
edit it."""
