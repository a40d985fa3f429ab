"""What apps embed to use a supernode.

``Identity`` holds an account key; ``DirectoryConnection`` is the thin, typed gRPC layer
(accounts, login, device records, lookups) on which the full client is built.
"""

from client_sdk.identity import Identity
from client_sdk.transport import DirectoryConnection

__all__ = ["DirectoryConnection", "Identity"]
