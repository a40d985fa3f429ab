"""``supernode identity new``, ``lookup``, ``search``, ``watch``: the SDK as a command line,
for poking at a directory the way ``etcdctl get/watch`` pokes at etcd.

Every command acts as a stored identity (:mod:`supernode.ops.identity_file`) through the
SDK's :class:`client_sdk.Client`: records are verified exactly as an app verifies them.
Keys are pinned in memory for the run only (a command line has no history to keep).

Exit codes: 0 done; 1 the directory said no or could not be reached (unknown handle, no
session, unavailable), with one line on stderr; 2 the command was wrong (arguments, a missing
or broken identity file, a value the server refused as invalid).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from client_sdk import (
    Client,
    ClientConfig,
    Consistency,
    InvalidArgument,
    NotFound,
    Presence,
    PresenceEvent,
    SearchResult,
    SupernodeError,
    Tls,
)
from client_sdk import Identity as SdkIdentity
from supernode.ops import identity_file
from supernode.ops.identity_file import IdentityFileError, StoredIdentity
from supernode.ops.presence_output import account_json

EXIT_REFUSED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A data command that failed; ``code`` is its exit code, the message its stderr line."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """Which supernode(s) to use and how to trust them."""

    endpoints: tuple[str, ...]
    ca_file: str = ""
    plaintext: bool = False

    def client_config(self) -> ClientConfig:
        if self.plaintext and self.ca_file:
            raise CommandError("--plaintext and --tls-ca-file: choose one", EXIT_USAGE)
        tls = Tls(ca_file=self.ca_file) if self.ca_file else Tls()
        # A person is waiting: fewer tries than an app's default, and no lease to keep.
        return ClientConfig(tls=tls, plaintext=self.plaintext, max_attempts=3)


def _client(target: Target, stored: StoredIdentity) -> Client:
    return Client(
        list(target.endpoints), stored.identity, stored.handle, config=target.client_config()
    )


def _failed(exc: SupernodeError, what: str) -> CommandError:
    if isinstance(exc, NotFound):
        return CommandError(f"{what}: not found ({exc})", EXIT_REFUSED)
    if isinstance(exc, InvalidArgument):
        return CommandError(f"{what}: refused as invalid ({exc})", EXIT_USAGE)
    return CommandError(f"{what}: {type(exc).__name__}: {exc}", EXIT_REFUSED)


def load_identity(path: Path) -> StoredIdentity:
    try:
        return identity_file.load(path)
    except IdentityFileError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


async def create_identity(
    target: Target, path: Path, handle: str, display_name: str, discoverable: bool
) -> dict[str, Any]:
    """A new key, its account created on the directory, both kept in ``path``. The file is
    reserved first (an existing one is refused before anything is created) and written only
    once the account exists; a failed creation leaves no file."""
    try:
        fd = identity_file.reserve(path)
    except IdentityFileError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    stored = StoredIdentity(handle, SdkIdentity.generate())
    try:
        async with _client(target, stored) as client:
            account = await client.create_account(display_name, discoverable=discoverable)
    except BaseException as exc:
        _abandon(fd, path)
        if isinstance(exc, SupernodeError):
            raise _failed(exc, f"account {handle!r}") from exc
        raise
    identity_file.write(fd, stored)
    return {"file": str(path), **account_json(account)}


def _abandon(fd: int, path: Path) -> None:
    """Drop the file reserved for an identity whose account was not created."""
    os.close(fd)
    path.unlink(missing_ok=True)


async def lookup(target: Target, stored: StoredIdentity, handle: str, quorum: bool) -> Presence:
    async with _client(target, stored) as client:
        try:
            return await client.lookup(handle, Consistency.QUORUM if quorum else Consistency.ONE)
        except SupernodeError as exc:
            raise _failed(exc, repr(handle)) from exc


async def search(
    target: Target, stored: StoredIdentity, query: str, limit: int
) -> list[SearchResult]:
    async with _client(target, stored) as client:
        try:
            return await client.search(query, limit)
        except SupernodeError as exc:
            raise _failed(exc, f"query {query!r}") from exc


async def watch(
    target: Target,
    stored: StoredIdentity,
    handles: Sequence[str],
    emit: Callable[[PresenceEvent], None],
    count: int | None,
    timeout_s: float | None,
) -> int:
    """Emit each event until ``count`` events were emitted or ``timeout_s`` passed (both
    optional: then until cancelled, i.e. Ctrl-C). Returns the events emitted."""
    emitted = 0
    async with _client(target, stored) as client:

        async def follow() -> None:
            nonlocal emitted
            async with client.watch(handles) as events:
                async for event in events:
                    emit(event)
                    emitted += 1
                    if count is not None and emitted >= count:
                        return

        try:
            if timeout_s is None:
                await follow()
            else:
                try:
                    async with asyncio.timeout(timeout_s):
                        await follow()
                except TimeoutError:
                    pass  # --timeout is how long to watch, not a failure
        except SupernodeError as exc:
            raise _failed(exc, " ".join(handles)) from exc
    return emitted


def run(command: str, action: Coroutine[Any, Any, Any], err: TextIO) -> tuple[int, Any]:
    """Run one command's coroutine; its result, or its exit code with the line on ``err``."""
    try:
        return 0, asyncio.run(action)
    except CommandError as exc:
        print(f"supernode {command}: {exc}", file=err)
        return exc.code, None
    except KeyboardInterrupt:
        return 0, None  # Ctrl-C ends a watch: what it was asked to do
