"""Account keys: generate, save, load, and sign the bodies the supernode verifies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk.protocol.signing import signing_payload


@dataclass(frozen=True)
class Identity:
    """An Ed25519 account key. The handle is not derived from it and holds no secret.

    Generate it once per user, keep it (``save`` / ``load``): losing it loses the account.

    Attributes:
        private_key: the Ed25519 private key that signs account, login and device records.
    """

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        """A new random account key."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key: what the supernode and peers know the account by."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, domain: bytes, body: bytes) -> bytes:
        """Sign ``body`` for one purpose (``domain``), so a signature for one kind of
        message can never be replayed as another."""
        return self.private_key.sign(signing_payload(domain, body))

    def save(self, path: Path) -> None:
        """Write the key as PKCS#8 PEM, readable by the owner only (mode 0600)."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key written by :meth:`save`; ``ValueError`` if it is not Ed25519."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return cls(key)
