"""Supernode: a user directory and rendezvous server.

The package is split by concern: ``directory/`` holds accounts, device presence and
leases as pure logic plus small storage-backed implementations; ``store.py`` is the
only module that touches RocksDB; ``rpc/`` translates gRPC calls into domain calls.
"""

__version__ = "0.1.0"
