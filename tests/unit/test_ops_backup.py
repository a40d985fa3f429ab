"""Backup files and restore rules (supernode.ops.backup) on a real store in a temporary
directory: what a checkpoint holds, and every refusal of restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supernode.directory.account_record import AccountRecord
from supernode.ops.backup import (
    DB_DIR,
    MANIFEST,
    BackupError,
    CorruptBackup,
    NotABackup,
    TargetNotEmpty,
    restore_backup,
    take_backup,
    verify_backup,
)
from supernode.store import Store


def _store(path: Path, accounts: int) -> Store:
    store = Store(path, block_cache_bytes=1 << 20)
    for i in range(accounts):
        assert store.insert_account(f"user{i}", AccountRecord(f"account {i}".encode()))
    return store


def _backup(tmp_path: Path, accounts: int = 3) -> Path:
    store = _store(tmp_path / "live", accounts)
    try:
        take_backup(store, tmp_path / "backup", node="n1", version="9.9", clock_ms=lambda: 1234)
    finally:
        store.close()
    return tmp_path / "backup"


def test_a_backup_holds_the_store_and_a_manifest_of_its_files(tmp_path: Path) -> None:
    store = _store(tmp_path / "live", 3)
    try:
        manifest = take_backup(
            store, tmp_path / "backup", node="n1", version="9.9", clock_ms=lambda: 1234
        )
        assert store.insert_account("after", AccountRecord(b"written after the checkpoint"))
    finally:
        store.close()
    assert (manifest.node, manifest.version, manifest.created_at_ms) == ("n1", "9.9", 1234)
    assert manifest.sequence >= 3 and manifest.total_bytes > 0
    on_disk = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    assert on_disk == manifest.to_json()
    assert {f["path"] for f in on_disk["files"]} >= {"CURRENT"}
    assert verify_backup(tmp_path / "backup") == manifest

    restore_backup(tmp_path / "backup", tmp_path / "restored")
    restored = Store(tmp_path / "restored", block_cache_bytes=1 << 20)
    try:
        assert [restored.get_account(f"user{i}") for i in range(3)] == [
            AccountRecord(b"account 0"),
            AccountRecord(b"account 1"),
            AccountRecord(b"account 2"),
        ]
        assert restored.get_account("after") is None
        assert restored.account_count() == 3
    finally:
        restored.close()


def test_backup_refuses_a_relative_or_non_empty_directory(tmp_path: Path) -> None:
    store = _store(tmp_path / "live", 1)
    try:
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        with pytest.raises(TargetNotEmpty, match="is not empty"):
            take_backup(store, tmp_path / "full", node="n", version="v")
        with pytest.raises(BackupError, match="absolute"):
            take_backup(store, Path("relative"), node="n", version="v")
    finally:
        store.close()


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(NotABackup, match="not a directory"):
        restore_backup(tmp_path / "absent", tmp_path / "data")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotABackup, match=f"has no {MANIFEST}"):
        restore_backup(tmp_path / "plain", tmp_path / "data")
    (tmp_path / "plain" / MANIFEST).write_text("{broken")
    with pytest.raises(NotABackup, match="not valid JSON"):
        restore_backup(tmp_path / "plain", tmp_path / "data")
    (tmp_path / "plain" / MANIFEST).write_text('{"format": 1}')
    with pytest.raises(NotABackup, match="not a valid backup manifest"):
        restore_backup(tmp_path / "plain", tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing was touched


def test_restore_refuses_a_backup_whose_files_do_not_match(tmp_path: Path) -> None:
    backup = _backup(tmp_path)
    current = backup / DB_DIR / "CURRENT"
    original = current.read_bytes()
    current.write_bytes(original[:-1] + b"X")
    with pytest.raises(CorruptBackup, match="CURRENT: does not match its checksum"):
        restore_backup(backup, tmp_path / "data")
    current.write_bytes(original)
    (backup / DB_DIR / "stray.sst").write_bytes(b"x")
    with pytest.raises(CorruptBackup, match=r"not in the backup's manifest: stray\.sst"):
        restore_backup(backup, tmp_path / "data")
    (backup / DB_DIR / "stray.sst").unlink()
    current.unlink()
    with pytest.raises(CorruptBackup, match="missing from the backup: CURRENT"):
        restore_backup(backup, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_restore_into_a_non_empty_directory_needs_force(tmp_path: Path) -> None:
    backup = _backup(tmp_path, accounts=2)
    data = tmp_path / "data"
    _store(data, 5).close()  # another store was there
    with pytest.raises(TargetNotEmpty, match="--force"):
        restore_backup(backup, data)
    restore_backup(backup, data, force=True)
    restored = Store(data, block_cache_bytes=1 << 20)
    try:
        assert restored.account_count() == 2 and restored.get_account("user4") is None
    finally:
        restored.close()
