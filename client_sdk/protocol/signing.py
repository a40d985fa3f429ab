"""What an Ed25519 signature covers, for each purpose, and how it is checked.

Every signed body travels as the exact bytes its signer serialized, so verification never
re-encodes anything (protobuf encoding is not canonical across implementations). The signed
payload is a domain-separation string, a zero byte, then the body: a signature made for one
purpose (say, a login challenge) can never be replayed as another (a device record).

Verification is ``cryptography``'s (OpenSSL); before it, the strict encoding rules of
``validation`` refuse weak keys and malleable signatures OpenSSL lets through (a small-order
key with the "universal" signature R = identity, S = 0 verified for every message). The
server and the SDK both verify here, so both hold every record to the same rules.
"""

from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client_sdk.protocol.validation import key_defect, signature_defect

CREATE_ACCOUNT_DOMAIN = b"supernode.v1.CreateAccount"
LOGIN_DOMAIN = b"supernode.v1.Login"
# A challenge signed to end every session of the account (a lost device): never a login.
REVOKE_SESSIONS_DOMAIN = b"supernode.v1.RevokeSessions"
DEVICE_RECORD_DOMAIN = b"supernode.v1.DeviceRecord"


def signing_payload(domain: bytes, body: bytes) -> bytes:
    """The bytes an Ed25519 signature covers for ``body`` signed for ``domain``."""
    return domain + b"\x00" + body


@lru_cache(maxsize=65536)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    # Parsing a key costs about as much as a verification; accounts are verified often.
    return Ed25519PublicKey.from_public_bytes(raw)


def signature_is_valid(public_key: bytes, domain: bytes, body: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``body`` for ``domain``,
    with a strong key and a canonical signature (``key_defect``, ``signature_defect``)."""
    if key_defect(public_key) is not None or signature_defect(signature) is not None:
        return False
    try:
        _public_key(public_key).verify(signature, signing_payload(domain, body))
    except (InvalidSignature, ValueError):
        return False
    return True
