"""Rolling back: a store opens a database that a newer version gave more column families."""

from pathlib import Path

from rocksdict import Options, Rdict

from supernode.store import Store


def test_a_family_added_by_a_newer_version_does_not_stop_an_older_one(tmp_path: Path) -> None:
    path = tmp_path / "db"
    Store(path, block_cache_bytes=1 << 20).close()
    known = [name for name in Rdict.list_cf(str(path)) if name != "default"]
    newer = Rdict(
        str(path),
        options=Options(raw_mode=True),
        column_families={name: Options(raw_mode=True) for name in known},
    )
    newer.create_column_family("added_later", Options(raw_mode=True))
    newer.close()
    del newer
    store = Store(path, block_cache_bytes=1 << 20)
    store.put_meta("still", b"works")
    assert store.get_meta("still") == b"works"
    store.close()
    assert "added_later" in Rdict.list_cf(str(path))
