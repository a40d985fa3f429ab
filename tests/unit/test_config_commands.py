"""``supernode config`` (values and their sources), ``supernode check-config`` (every
problem at once), the warning about misspelled variables, and the generated reference."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from supernode import certs
from supernode.cli import main
from supernode.config import ServerSettings, resolve, setting_names
from supernode.config_reference import BEGIN, DOC, END, field_docs, render, splice


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read os.environ: only what a test sets there."""
    for name in list(os.environ):
        if name.startswith("SUPERNODE_"):
            monkeypatch.delenv(name)


def test_sources_name_each_layer(tmp_path: Path) -> None:
    file = tmp_path / "node.toml"
    file.write_text(
        '[server]\nlisten = "127.0.0.1:1"\nworkers = 2\n[lease]\nmax_ttl_seconds = 600\n'
    )
    resolved = resolve(
        file,
        environ={"SUPERNODE_WORKERS": "3", "SUPERNODE_LEASE_MIN_TTL_SECONDS": "5"},
        flags={"server.workers": "4"},
    )
    assert resolved.config is not None and resolved.config.server.workers == 4
    assert resolved.sources["server.listen"] == f"file {file}"
    assert resolved.sources["lease.max_ttl_seconds"] == f"file {file}"
    assert resolved.sources["lease.min_ttl_seconds"] == "env SUPERNODE_LEASE_MIN_TTL_SECONDS"
    assert resolved.sources["server.workers"] == "flag --workers"
    assert resolved.sources["limits.max_endpoints"] == "default"
    assert set(resolved.sources) == {f"{s}.{n}" for s, n, _, _ in setting_names()}


def test_every_problem_is_collected(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(
        "[nope]\nx = 1\n[server]\nlisten_port = 1\nworkers = 'two'\n"
        "[lease]\nmin_ttl_seconds = 100\nmax_ttl_seconds = 10\n"
    )
    resolved = resolve(file, environ={"SUPERNODE_SYNC_WRITES": "maybe"})
    assert resolved.config is None
    text = "\n".join(resolved.problems)
    for expected in (
        "unknown section [nope]",
        "unknown setting server.listen_port",
        "server.workers",
        "min_ttl_seconds",
        "SUPERNODE_SYNC_WRITES",
    ):
        assert expected in text
    assert len(resolved.problems) == 5


def test_misspelled_variable_names_the_closest_setting() -> None:
    resolved = resolve(
        environ={
            "SUPERNODE_LISTN": "127.0.0.1:1",
            "SUPERNODE_TEST_WORKERS": "2",  # the test suite's own: known, not a setting
            "SUPERNODE_CA": "ca.pem",  # the examples'
        }
    )
    assert resolved.unknown_variables == [
        "environment SUPERNODE_LISTN: not a setting, ignored (did you mean SUPERNODE_LISTEN?)"
    ]


def test_workers_and_cluster_conflict() -> None:
    resolved = resolve(
        environ={}, flags={"server.workers": "2", "cluster.etcd_endpoints": "127.0.0.1:2379"}
    )
    assert resolved.config is None
    assert "server.workers: 2, but a cluster member runs as one process" in resolved.problems[0]


def test_config_prints_valid_toml_with_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "node.toml"
    file.write_text('[server]\nlisten = "127.0.0.1:1"\n')
    monkeypatch.setenv("SUPERNODE_LEASE_MAX_TTL_SECONDS", "700")
    assert main(["config", "--config", str(file), "--stun-listen", ""]) == 0
    out = capsys.readouterr().out
    assert f'listen = "127.0.0.1:1"  # file {file}' in out
    assert "max_ttl_seconds = 700  # env SUPERNODE_LEASE_MAX_TTL_SECONDS" in out
    assert 'stun_listen = ""  # flag --stun-listen' in out
    assert "sync_writes = false  # default" in out
    document = tomllib.loads(out)  # what it prints is a config file again
    assert document["server"]["listen"] == "127.0.0.1:1"
    assert sum(len(table) for table in document.values()) == len(setting_names())


def test_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--json", "--workers", "2"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["server"]["workers"] == {"value": 2, "source": "flag --workers"}
    assert document["server"]["data_dir"] == {"value": "data", "source": "default"}


def test_config_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--workers", "0"]) == 2
    assert "server.workers: 0, at least 1" in capsys.readouterr().err


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, _ = certs.load_or_make_ca(tmp_path)
    cert, key = certs.write_node(tmp_path, ca, "node", certs.DEFAULT_HOSTS)
    file = tmp_path / "node.toml"
    file.write_text(
        f'[server]\nlisten = "0.0.0.0:7700"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    )
    assert main(["check-config", "--config", str(file)]) == 0
    assert capsys.readouterr().out == "OK\n"


def test_check_config_lists_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ca, _ = certs.load_or_make_ca(tmp_path / "a")
    cert, _ = certs.write_node(tmp_path / "a", ca, "node", certs.DEFAULT_HOSTS)
    other_ca, _ = certs.load_or_make_ca(tmp_path / "b")
    _, other_key = certs.write_node(tmp_path / "b", other_ca, "node", certs.DEFAULT_HOSTS)
    a_file = tmp_path / "file"
    a_file.write_text("")
    file = tmp_path / "node.toml"
    file.write_text(
        '[server]\nlisten = "127.0.0.1:7700"\nmetrics_listen = "127.0.0.1:7700"\n'
        f'stun_listen = "nohost"\ndata_dir = "{a_file}"\n'
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{other_key}"\nca_file = "/nonexistent/ca.pem"\n'
        '[cluster]\npeer_listen = "no.such.host.invalid:1"\n'
    )
    monkeypatch.setenv("SUPERNODE_METRICS_LISTN", "x")
    assert main(["check-config", "--config", str(file)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("supernode check-config: ") for line in lines)
    text = "\n".join(lines)
    for expected in (
        "SUPERNODE_METRICS_LISTN: not a setting, ignored (did you mean SUPERNODE_METRICS_LISTEN?)",
        "server.stun_listen: 'nohost' is not host:port",
        "host 'no.such.host.invalid' does not resolve",
        "server.metrics_listen: port 7700 is also server.listen's",
        f"server.data_dir {a_file}: exists and is not a directory",
        "tls.ca_file /nonexistent/ca.pem: cannot be read (No such file or directory)",
    ):
        assert expected in text
    assert len(lines) == 6

    # With the CA readable, the key that is not the certificate's is found too.
    file.write_text(
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{other_key}"\n[server]\nlisten = "10.1.1.1:1"\n'
    )
    assert main(["check-config", "--config", str(file), "--json"]) == 2
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False
    assert [p for p in verdict["problems"] if "not the key of tls.cert_file" in p]


def test_check_config_plaintext_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--tls-plaintext", "--listen", "0.0.0.0:7700"]) == 2
    assert "plaintext on a non-loopback address" in capsys.readouterr().err


def test_check_config_worker_metrics_ports(capsys: pytest.CaptureFixture[str]) -> None:
    """Worker i serves its metrics on the metrics port + i: here, on the gRPC port."""
    args = ["--tls-plaintext", "--listen", "127.0.0.1:9701", "--metrics-listen", "127.0.0.1:9700"]
    assert main(["check-config", *args, "--workers", "2"]) == 2
    assert "server.metrics_listen (+1, worker 1): port 9701" in capsys.readouterr().err
    assert main(["check-config", *args]) == 0


def test_help_shows_real_defaults_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert '(server.listen; env SUPERNODE_LISTEN; default "127.0.0.1:7700")' in text
    assert "(tls.plaintext; env SUPERNODE_TLS_PLAINTEXT; default false)" in text
    assert "UDP STUN binding responder; an empty string turns it off (server.stun_listen" in text


def test_reference_is_current() -> None:
    """docs/operations.md holds what `python -m supernode.config_reference` makes."""
    document = DOC.read_text()
    assert splice(document, render()) == document, (
        "regenerate: python -m supernode.config_reference"
    )
    for section, name, _, _ in setting_names():
        assert f"`{name}`" in document.split(BEGIN)[1].split(END)[0], f"{section}.{name}"


def test_field_docs_are_the_comments_above_each_field() -> None:
    docs = field_docs(ServerSettings)
    assert docs["stun_listen"] == "UDP STUN binding responder; an empty string turns it off."
    assert docs["workers"].startswith("Processes serving the public port")
