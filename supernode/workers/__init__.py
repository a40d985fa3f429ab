"""One supernode on many cores: a primary process and read-serving worker processes.

The primary owns the RocksDB store and every piece of shared state (watch hub, rendezvous,
relay, rate limits) exactly as a single-process node does. Each worker binds the same
public port (``SO_REUSEPORT``: the kernel spreads client connections), opens the store as
a read-only RocksDB secondary, answers the hot read calls itself (``Lookup``,
``LookupMany``, ``GetAccount``) and forwards every other call, unchanged, to the primary
over a private socket. A change feed from the primary tells each worker which cached
lookup answers to drop, and a worker answers a forwarded write only once it has caught up
with it, so a client reads its own writes (a gRPC channel stays on one process).
"""
