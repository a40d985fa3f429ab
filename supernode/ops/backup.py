"""Backups of a node's store: what ``supernode backup`` asks the node to write, and what
``supernode restore`` checks and puts back.

A backup directory holds ``db/``, a RocksDB checkpoint of the serving store
(:meth:`supernode.store.Store.checkpoint`: every column family as of one point in time,
taken while the node writes, so no WriteBatch is half in), and ``supernode-backup.json``,
the manifest: format, version and node that wrote it, when, the store sequence it holds at
least, and every file of ``db/`` with its size and SHA-256. The manifest is written last
(to a temporary name, then renamed), so a directory without one is not a backup, and a
backup whose files do not match it is refused before anything is touched.

Restore is offline: the node must be stopped (its RocksDB lock is checked). It copies the
checked files into the data directory, then checks the copies too.

In a cluster a backup is one node's replica: its presence records, hints and mirror of
etcd (docs/operations.md "Backup and restore").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernode.store import Store, StoreError

MANIFEST = "supernode-backup.json"
DB_DIR = "db"
FORMAT = 1
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says what to do instead."""


class NotABackup(BackupError):
    """The directory was not written by ``supernode backup`` (or not completely)."""


class CorruptBackup(BackupError):
    """A file of the backup does not match its manifest."""


class TargetNotEmpty(BackupError):
    """The directory to write into holds files already."""


class NodeRunning(BackupError):
    """A node holds the target data directory's RocksDB lock."""


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative to db/
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What ``supernode-backup.json`` says; its JSON keys are these field names."""

    format: int
    version: str
    node: str
    created_at_ms: int
    sequence: int
    files: tuple[BackupFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "node": self.node,
            "created_at_ms": self.created_at_ms,
            "sequence": self.sequence,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_json(cls, document: object, where: Path) -> Manifest:
        if not isinstance(document, dict):
            raise NotABackup(f"{where} is not a backup manifest (not a JSON object)")
        try:
            if document["format"] != FORMAT:
                raise NotABackup(
                    f"{where}: backup format {document['format']!r}, this version reads {FORMAT}"
                )
            return cls(
                format=FORMAT,
                version=str(document["version"]),
                node=str(document["node"]),
                created_at_ms=int(document["created_at_ms"]),
                sequence=int(document["sequence"]),
                files=tuple(
                    BackupFile(str(f["path"]), int(f["size"]), str(f["sha256"]))
                    for f in document["files"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotABackup(f"{where} is not a valid backup manifest ({exc!r})") from exc


def _is_empty(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inventory(root: Path) -> tuple[BackupFile, ...]:
    return tuple(
        BackupFile(str(path.relative_to(root)), path.stat().st_size, _sha256(path))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def take_backup(
    store: Store,
    directory: Path,
    *,
    node: str,
    version: str,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Manifest:
    """Checkpoint ``store`` into ``directory`` (absolute; absent or empty) and write the
    manifest. Blocking: the node runs it in a thread while it goes on serving."""
    if not directory.is_absolute():
        raise BackupError(f"backup directory {directory} must be an absolute path")
    if not _is_empty(directory):
        raise TargetNotEmpty(f"backup directory {directory} is not empty: give a new one")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        sequence = store.checkpoint(directory / DB_DIR)
        manifest = Manifest(
            format=FORMAT,
            version=version,
            node=node,
            created_at_ms=clock_ms(),
            sequence=sequence,
            files=_inventory(directory / DB_DIR),
        )
        temporary = directory / f".{MANIFEST}.tmp"
        with temporary.open("w") as out:
            json.dump(manifest.to_json(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(directory / MANIFEST)
        _fsync_dir(directory)
    except (OSError, StoreError) as exc:
        raise BackupError(f"backup into {directory} failed: {exc}") from exc
    return manifest


def read_manifest(backup: Path) -> Manifest:
    """The manifest of ``backup``; :class:`NotABackup` when there is none or it is broken."""
    path = backup / MANIFEST
    if not backup.is_dir():
        raise NotABackup(f"{backup} is not a directory (give what `supernode backup` wrote)")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotABackup(
            f"{backup} is not a supernode backup: it has no {MANIFEST} "
            "(made by `supernode backup`; a backup interrupted before it finished has none)"
        ) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise NotABackup(f"{path} is not valid JSON: {exc}") from exc
    return Manifest.from_json(document, path)


def verify_files(root: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is in ``root`` with its size and checksum, and no other."""
    listed = {f.path for f in manifest.files}
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    if missing := sorted(listed - present):
        raise CorruptBackup(f"{root}: files missing from the backup: {', '.join(missing)}")
    if extra := sorted(present - listed):
        raise CorruptBackup(f"{root}: files not in the backup's manifest: {', '.join(extra)}")
    for expected in manifest.files:
        path = root / expected.path
        if path.stat().st_size != expected.size or _sha256(path) != expected.sha256:
            raise CorruptBackup(f"{path}: does not match its checksum in {MANIFEST}")


def verify_backup(backup: Path) -> Manifest:
    """Read and check a backup completely; its manifest when every file matches."""
    manifest = read_manifest(backup)
    verify_files(backup / DB_DIR, manifest)
    return manifest


def _locked(data_dir: Path) -> bool:
    """Whether a process holds ``data_dir``'s RocksDB lock (RocksDB locks with fcntl)."""
    lock = data_dir / "LOCK"
    if not lock.exists():
        return False
    with lock.open("r+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def restore_backup(backup: Path, data_dir: Path, *, force: bool = False) -> Manifest:
    """Check ``backup``, then make ``data_dir`` hold exactly its store. ``data_dir`` must be
    absent or empty unless ``force``; never while a node runs on it."""
    manifest = verify_backup(backup)
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"data directory {data_dir} is not a directory")
    if not _is_empty(data_dir):
        if not force:
            raise TargetNotEmpty(
                f"data directory {data_dir} is not empty: restore into an empty one, or "
                "pass --force to replace what it holds"
            )
        if _locked(data_dir):
            raise NodeRunning(f"a node is running on {data_dir} (its store is locked): stop it")
        for entry in data_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    source = backup / DB_DIR
    for item in manifest.files:
        target = data_dir / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / item.path, target)
        with target.open("rb") as copied:
            os.fsync(copied.fileno())
    _fsync_dir(data_dir)
    verify_files(data_dir, manifest)
    return manifest
