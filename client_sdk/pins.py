"""Trust on first use for account keys: the first key seen for a handle is pinned.

A supernode serves account keys, so a malicious or compromised one could serve its own key
for a handle and then sign device records with it. Pinning turns that into a loud
``KeyChanged`` on every device that has talked to the handle before (as SSH's
``known_hosts`` does for host keys). Pins live in memory, or in a small JSON file readable by
the owner only so that they outlive the app.

An account may rotate its key (``client_sdk.protocol.rotation``): each rotation is signed by
the key it replaces. A pin follows such a chain, and only such a chain: when the served
chain, checked link by link, passes through the pinned key, the pin moves to the chain's
end (:func:`followed`); any other change of key, including a chain cut short before the
pinned key (a rollback), is ``KeyChanged``.

One process owns a pin file: writes replace it atomically, but two processes writing the
same file would each keep only their own additions.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from client_sdk.errors import KeyChanged

_FORMAT_VERSION = 1


def followed(handle: str, pinned: bytes | None, chain: Sequence[bytes]) -> bytes:
    """The pin after seeing ``chain`` (an account's keys, creation key first, every link
    already verified): its last key when nothing is pinned or the pinned key is on the
    chain (the rotations after it were signed by it and its successors); ``KeyChanged``
    otherwise. Pure: the transitions :meth:`PinStore.follow` makes."""
    current = chain[-1]
    if pinned is None or pinned == current or pinned in chain:
        return current
    raise KeyChanged(handle, pinned, current)


class PinStore:
    """Pinned account keys by handle; in memory unless given a ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._pins: dict[str, bytes] = {}
        # The sync facade may use a store from its loop thread and the app thread alike.
        self._lock = threading.Lock()
        if path is not None and path.exists():
            self._pins = _read(path)

    @classmethod
    def in_memory(cls) -> PinStore:
        """Pins for this process only (they are lost when it exits)."""
        return cls()

    @classmethod
    def file(cls, path: Path | str) -> PinStore:
        """Pins kept in a JSON file (mode 0600), read now if it exists, rewritten on change."""
        return cls(Path(path))

    @property
    def path(self) -> Path | None:
        """The pin file, or ``None`` in memory."""
        return self._path

    def pinned(self, handle: str) -> bytes | None:
        """The key pinned for ``handle``, or ``None``."""
        with self._lock:
            return self._pins.get(handle)

    def check(self, handle: str, account_key: bytes) -> None:
        """Pin ``account_key`` if ``handle`` has no pin yet; raise ``KeyChanged`` if it
        has another one."""
        self.follow(handle, [account_key])

    def follow(self, handle: str, chain: Sequence[bytes]) -> bytes:
        """Check an account's verified key chain (creation key first) against the pin and
        move the pin along it (see :func:`followed`); the key now pinned."""
        with self._lock:
            pinned = self._pins.get(handle)
            now = followed(handle, pinned, chain)
            if now != pinned:
                self._pins[handle] = now
                self._save()
            return now

    def pin(self, handle: str, account_key: bytes) -> None:
        """Pin a key learned out of band (a QR code, a contact card), replacing any pin."""
        with self._lock:
            self._pins[handle] = account_key
            self._save()

    def forget(self, handle: str) -> None:
        """Drop a pin, e.g. after the user confirmed a key rotation out of band."""
        with self._lock:
            if self._pins.pop(handle, None) is not None:
                self._save()

    def _save(self) -> None:
        if self._path is not None:
            _write(self._path, self._pins)


def _read(path: Path) -> dict[str, bytes]:
    document = json.loads(path.read_text())
    if not isinstance(document, dict) or document.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: not a version {_FORMAT_VERSION} pin file")
    pins = document.get("pins", {})
    if not isinstance(pins, dict):
        raise ValueError(f"{path}: 'pins' must be an object")
    return {str(handle): bytes.fromhex(str(key)) for handle, key in pins.items()}


def _write(path: Path, pins: dict[str, bytes]) -> None:
    """Replace the file atomically (write a 0600 temp file, then rename over the old one),
    so a crash never leaves a half-written pin file that would lose every pin."""
    document = {"version": _FORMAT_VERSION, "pins": {h: k.hex() for h, k in sorted(pins.items())}}
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
