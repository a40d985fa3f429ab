"""The Docker image and the systemd unit in deploy/, checked as far as this machine allows:
no Docker daemon here, so the Dockerfile is read (files it copies exist, its settings and
command are what `supernode check-config` accepts); the unit goes through
`systemd-analyze verify` (installed by the project's own installer when missing), and its
commands through the real command line."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supernode import certs
from supernode.cli import _parser, main
from supernode.config import resolve, split_host_port
from supernode.debian import SYSTEMD_PACKAGE, ensure_installed

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
UNIT = ROOT / "deploy" / "systemd" / "supernode.service"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        instruction, _, arguments = pending.partition(" ")
        out.append((instruction.upper(), arguments.strip()))
        pending = ""
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("SUPERNODE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_dockerfile_copies_files_that_exist() -> None:
    copies = [a for name, a in dockerfile_instructions() if name == "COPY"]
    assert copies
    for arguments in copies:
        words = arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), source


def test_dockerfile_image_shape() -> None:
    stage = dict(final_stage())
    assert stage["FROM"].startswith("python:3.11-slim")
    assert stage["USER"] not in ("root", "0")
    assert stage["STOPSIGNAL"] == "SIGTERM"
    env = dockerfile_env()
    assert json.loads(stage["VOLUME"]) == [env["SUPERNODE_DATA_DIR"]]
    exposed = set(stage["EXPOSE"].split())
    ports = {
        f"{split_host_port(env[v], v)[1]}/{proto}"
        for v, proto in (
            ("SUPERNODE_LISTEN", "tcp"),
            ("SUPERNODE_METRICS_LISTEN", "tcp"),
            ("SUPERNODE_STUN_LISTEN", "udp"),
        )
    }
    assert exposed == ports
    metrics_port = split_host_port(env["SUPERNODE_METRICS_LISTEN"], "metrics")[1]
    assert f"127.0.0.1:{metrics_port}/readyz" in stage["HEALTHCHECK"]  # readiness


def test_dockerfile_settings_and_command_pass_check_config(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image's environment and command, plus the certificate an operator must mount."""
    env = dockerfile_env()
    assert resolve(environ=env).unknown_variables == []
    stage = dict(final_stage())
    command = [*json.loads(stage["ENTRYPOINT"]), *json.loads(stage["CMD"])]
    assert command[:2] == ["supernode", "serve"]
    ca, _ = certs.load_or_make_ca(tmp_path)
    cert, key = certs.write_node(tmp_path, ca, "node", certs.DEFAULT_HOSTS)
    for name, value in env.items():
        clean_environment.setenv(name, value)
    # Without a certificate the node (and check-config) refuses: what the header says.
    assert main(["check-config", *command[2:]]) == 2
    assert "no TLS configured" in capsys.readouterr().err
    clean_environment.setenv("SUPERNODE_TLS_CERT_FILE", str(cert))
    clean_environment.setenv("SUPERNODE_TLS_KEY_FILE", str(key))
    assert main(["check-config", *command[2:]]) == 0
    assert capsys.readouterr().out == "OK\n"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    return unit


def test_unit_runs_real_commands(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = read_unit()["Service"]
    config = tmp_path / "supernode.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:7700"\n[tls]\nplaintext = true\n')
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key])
        assert argv[0] == "/usr/local/bin/supernode"
        args = [str(config) if a == "/etc/supernode/supernode.toml" else a for a in argv[1:]]
        _parser().parse_args(args)  # every flag is the command line's (SystemExit if not)
        if args[0] == "check-config":
            assert main(args) == 0, capsys.readouterr().err
    assert shlex.split(service["ExecStart"])[1] == "serve"
    name, _, value = service["Environment"].partition("=")
    assert resolve(environ={name: value}).unknown_variables == []
    assert value == f"/var/lib/{service['StateDirectory']}"
    assert service["Type"] == "simple"  # no sd_notify in the node: never "notify"
    assert service["Restart"] == "on-failure"
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "LimitNOFILE"):
        assert hardening in service


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """`systemd-analyze verify` insists the command exists: the unit is verified with the
    path of this installation's `supernode` in place of /usr/local/bin's."""
    analyze = ensure_installed(SYSTEMD_PACKAGE)
    here = shutil.which("supernode") or str(Path(sys.executable).parent / "supernode")
    assert Path(here).exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/supernode", here))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""


@pytest.mark.parametrize(
    ("environment", "expected", "absent"),
    [
        ({}, "--tls-plaintext --data-dir data", None),
        ({"SUPERNODE_DATA_DIR": "/x"}, "--tls-plaintext", "--data-dir"),
        ({"SUPERNODE_TLS_CERT_FILE": "c.pem"}, "serve  --data-dir data", "--tls-plaintext"),
    ],
)
def test_make_run_leaves_environment_settings_alone(
    environment: dict[str, str], expected: str, absent: str | None
) -> None:
    """`SUPERNODE_DATA_DIR=/x make run` used to be overridden by the Makefile's flag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERNODE_")}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"],
        cwd=ROOT,
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    serve = [line for line in done.stdout.splitlines() if "supernode serve" in line]
    assert len(serve) == 1 and expected in serve[0], done.stdout
    assert absent is None or absent not in serve[0]
