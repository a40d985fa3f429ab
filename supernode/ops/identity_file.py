"""The identity a data command acts as: a handle and its Ed25519 account key, in one file.

``supernode identity new HANDLE --file F`` writes it (JSON ``{"handle": ..., "private_key":
PKCS#8 PEM}``, mode 0600, never overwritten); ``lookup``, ``search`` and ``watch`` read it.
The key is the account: whoever holds the file acts as that user.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client_sdk import Identity


class IdentityFileError(Exception):
    """The identity file cannot be read or written; the message names it and what to do."""


@dataclass(frozen=True)
class StoredIdentity:
    handle: str
    identity: Identity

    def to_json(self) -> str:
        pem = self.identity.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return json.dumps({"handle": self.handle, "private_key": pem.decode()}, indent=1) + "\n"


def reserve(path: Path) -> int:
    """Create ``path`` (mode 0600, parents as needed) and return its descriptor; refuses a
    file that exists, so an identity (an account) is never overwritten."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IdentityFileError(
            f"{path} exists: an identity is never overwritten; give another --file"
        ) from None
    except OSError as exc:
        raise IdentityFileError(f"cannot create {path}: {exc.strerror}") from exc


def write(fd: int, stored: StoredIdentity) -> None:
    with os.fdopen(fd, "w") as out:
        out.write(stored.to_json())
        out.flush()
        os.fsync(out.fileno())


def load(path: Path) -> StoredIdentity:
    """The identity in ``path``; :class:`IdentityFileError` saying what is wrong."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise IdentityFileError(
            f"no identity file {path}: create one with `supernode identity new HANDLE "
            f"--file {path}`, or give --identity"
        ) from None
    except OSError as exc:
        raise IdentityFileError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise IdentityFileError(f"{path} is not an identity file (not JSON: {exc})") from exc
    try:
        handle = document["handle"]
        key = serialization.load_pem_private_key(document["private_key"].encode(), password=None)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise IdentityFileError(
            f"{path} is not an identity file (needs handle and private_key)"
        ) from exc
    if not isinstance(handle, str) or not isinstance(key, Ed25519PrivateKey):
        raise IdentityFileError(f"{path}: the key is not Ed25519 or the handle not text")
    return StoredIdentity(handle, Identity(key))
