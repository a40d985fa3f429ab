from pathlib import Path

import pytest

from supernode.cli import main
from supernode.config import ConfigError, load, split_host_port


def test_defaults_run_a_single_node() -> None:
    config = load(environ={})
    assert config.server.listen == "127.0.0.1:7700"
    assert config.server.data_dir == Path("data")
    assert config.lease.max_ttl_seconds == 3600


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "supernode.toml"
    file.write_text(
        '[server]\nlisten = "0.0.0.0:1"\nsync_writes = true\n'
        "[lease]\nmax_ttl_seconds = 600\nmin_ttl_seconds = 5\n"
        "[limits]\nmax_lookup_many = 50\n"
    )
    environ = {"SUPERNODE_LISTEN": "127.0.0.1:2", "SUPERNODE_LEASE_MAX_TTL_SECONDS": "700"}
    config = load(file, environ=environ, flags={"lease.max_ttl_seconds": "800"})
    assert config.server.listen == "127.0.0.1:2"
    assert config.server.sync_writes is True
    assert config.lease.max_ttl_seconds == 800
    assert config.lease.min_ttl_seconds == 5
    assert config.limits.max_lookup_many == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nope]\nx = 1\n", r"unknown section \[nope\]"),
        ("[server]\nlisten_port = 1\n", "unknown setting server.listen_port"),
        ("[lease]\nmax_ttl_seconds = 'many'\n", "lease.max_ttl_seconds"),
        ("[lease]\nmin_ttl_seconds = 100\nmax_ttl_seconds = 10\n", "min_ttl_seconds"),
        ("not toml [", "config file"),
    ],
)
def test_bad_files_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(file, environ={})


def test_bad_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SUPERNODE_SYNC_WRITES"):
        load(environ={"SUPERNODE_SYNC_WRITES": "maybe"})


def test_split_host_port() -> None:
    assert split_host_port("[::1]:80", "x") == ("::1", 80)
    for bad in ("nohost", ":80", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            split_host_port(bad, "listen")


def test_cli_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "supernode 0.1.0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert "--lease-max-ttl-seconds" in help_text and "SUPERNODE_LEASE_MAX_TTL_SECONDS" in help_text


def test_cli_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--lease-min-ttl-seconds", "abc"]) == 2
    assert "--lease-min-ttl-seconds" in capsys.readouterr().err
