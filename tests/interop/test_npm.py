"""The interop client's npm install runs once per lock: the stamp logic, without npm."""

from pathlib import Path

import pytest

from tests.interop.npm import LOCK_FILE, STAMP, NpmError, install, is_installed, lock_digest


def package(tmp_path: Path, lock: str = '{"lockfileVersion": 3}') -> Path:
    (tmp_path / LOCK_FILE).write_text(lock)
    (tmp_path / "node_modules").mkdir(exist_ok=True)
    return tmp_path


def test_a_package_without_a_stamp_needs_installing(tmp_path: Path) -> None:
    assert not is_installed(package(tmp_path))


def test_the_stamp_of_the_current_lock_means_installed(tmp_path: Path) -> None:
    directory = package(tmp_path)
    (directory / STAMP).write_text(lock_digest(directory) + "\n")
    assert is_installed(directory)


def test_a_changed_lock_needs_installing_again(tmp_path: Path) -> None:
    directory = package(tmp_path)
    (directory / STAMP).write_text(lock_digest(directory) + "\n")
    package(tmp_path, '{"lockfileVersion": 3, "packages": {}}')
    assert not is_installed(directory)


def test_an_installed_package_runs_no_npm(tmp_path: Path) -> None:
    directory = package(tmp_path)
    (directory / STAMP).write_text(lock_digest(directory))
    install(directory, npm=str(tmp_path / "no-such-npm"))  # would fail if it ran


def test_a_failed_npm_ci_is_an_error_and_leaves_no_stamp(tmp_path: Path) -> None:
    directory = package(tmp_path)
    with pytest.raises(NpmError, match=r"npm ci in .* failed \(1\)"):
        install(directory, npm="false")
    assert not (directory / STAMP).exists()
