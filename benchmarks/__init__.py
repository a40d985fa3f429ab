"""Lookup-latency benchmarks: the supernode side by side with grpc.aio, etcd and Redis."""
