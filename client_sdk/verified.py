"""Signatures this process has already seen verify, so a record served again costs no Ed25519.

An app looks the same contacts up again and again, and a supernode serves a device record
unchanged until the device renews it: the SDK would verify the same signature of the same
bytes by the same key each time (~50-120 µs each, most of a lookup's client CPU). A
verification is a pure function of (key, domain, body, signature), so its positive result
can be remembered: the cache holds a SHA-256 digest of the four (the key and signature have
fixed lengths, the domain ends in a NUL byte, so the concatenation is unambiguous), never
the bytes, and only for signatures that verified. A record that differs in any byte misses.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from client_sdk.protocol.signing import signature_is_valid

# About 100 bytes per entry: 32,768 entries (a few thousand contacts' devices and their
# renewals) cost ~3 MB.
_CAPACITY = 32_768
_valid: OrderedDict[bytes, None] = OrderedDict()


def verifies(public_key: bytes, domain: bytes, body: bytes, signature: bytes) -> bool:
    """``signature_is_valid``, answered from memory for a signature that verified before."""
    digest = hashlib.sha256(b"".join((public_key, signature, domain, b"\x00", body))).digest()
    if digest in _valid:
        _valid.move_to_end(digest)
        return True
    if not signature_is_valid(public_key, domain, body, signature):
        return False
    _valid[digest] = None
    if len(_valid) > _CAPACITY:
        _valid.popitem(last=False)
    return True
