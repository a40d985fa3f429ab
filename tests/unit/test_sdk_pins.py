"""Trust on first use: pin, detect a changed key, persist in a 0600 file."""

import json
import stat
from pathlib import Path

import pytest

from client_sdk.errors import KeyChanged
from client_sdk.pins import PinStore

KEY_X = b"\x01" * 32
KEY_Y = b"\x02" * 32


def test_first_key_is_pinned_and_the_same_key_passes() -> None:
    pins = PinStore.in_memory()
    pins.check("bob", KEY_X)
    pins.check("bob", KEY_X)
    assert pins.pinned("bob") == KEY_X
    assert pins.path is None


def test_another_key_for_a_pinned_handle_raises_key_changed() -> None:
    pins = PinStore.in_memory()
    pins.check("bob", KEY_X)
    with pytest.raises(KeyChanged) as raised:
        pins.check("bob", KEY_Y)
    assert (raised.value.handle, raised.value.pinned, raised.value.served) == ("bob", KEY_X, KEY_Y)
    assert pins.pinned("bob") == KEY_X  # the pin is not replaced by what was served


def test_forget_accepts_a_rotated_key_and_pin_sets_one_learned_out_of_band() -> None:
    pins = PinStore.in_memory()
    pins.check("bob", KEY_X)
    pins.forget("bob")
    pins.check("bob", KEY_Y)
    assert pins.pinned("bob") == KEY_Y
    pins.pin("carol", KEY_X)
    with pytest.raises(KeyChanged):
        pins.check("carol", KEY_Y)


def test_file_store_persists_pins_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    pins = PinStore.file(path)
    pins.check("bob", KEY_X)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"version": 1, "pins": {"bob": KEY_X.hex()}}
    reopened = PinStore.file(path)
    with pytest.raises(KeyChanged):
        reopened.check("bob", KEY_Y)
    assert [p.name for p in tmp_path.iterdir()] == ["pins.json"]  # no temp files left


def test_file_store_refuses_a_file_it_does_not_understand(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="pin file"):
        PinStore.file(path)
