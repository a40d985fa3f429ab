"""What the supernode and the client SDK share: the wire contract and the rules on it.

This package holds the generated ``supernode.v1`` code (``client_sdk.protocol.v1``, built
from ``protos/`` by the build, never committed), the signing payloads and their domains, the
parsing and validation of signed bodies, the device-record merge rule and the protobuf
framing of stored bytes. It imports nothing of the server and nothing of the rest of
``client_sdk``: the server imports it, and so does the SDK, so the two sides cannot drift.
"""
