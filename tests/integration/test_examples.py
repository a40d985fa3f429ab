"""Acceptance 7: every ``examples/*.py`` and the README's SDK code run against a real
supernode, so the documentation cannot rot. ``two_terminals.py`` runs as two processes
(Alice and Bob), each waited on with a deadline."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client_sdk import Identity
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import unused_target

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
TWO_TERMINALS = REPO / "examples" / "two_terminals.py"

# What each example must print (besides exiting 0): proof it did its job.
EXPECTED = {
    "quickstart.py": ["alice found bob-", "/laptop: online at 192.0.2.10:40000/udp", "now busy"],
    "watch_presence.py": ["snapshot: {", "online: online", "updated: away", "(unregistered)"],
    "sync_script.py": ["watching myself: ['cli']", "own key pinned: True"],
    "connect_peers.py": ["path: direct", "bob received 'hello over quic'", "'HELLO OVER QUIC'"],
}


def run(arguments: list[str], target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SUPERNODE_TARGET": target},
    )


# What each side of two_terminals.py must print, in this order.
EXPECTED_BOB = [
    "bob: created identity in",
    "bob: alice is watching",
    "bob: the tablet quit without unregistering; lease ends in 2 s",
    "bob sees bob/phone online: online",
    "bob sees bob/tablet offline: lease expired",
    "bob sees bob/phone offline: unregistered (signed off)",
    "bob sees alice/laptop offline: unregistered (signed off)",
    "bob: alice signed off; bye",
]
EXPECTED_ALICE = [
    "alice: created identity in",
    "alice: watching bob, online now: []",
    "alice sees bob/phone online: online",
    "alice sees bob/tablet offline: lease expired (the app crashed or lost its network)",
    "alice sees bob/phone offline: unregistered (signed off)",
    "alice: lookup_many bob: 0 device(s)",
    "alice: lookup_many nobody-here: no such account",
    "alice: lookup nobody-here: NotFound",
]


def test_every_example_is_checked() -> None:
    assert {path.name for path in EXAMPLES} == set(EXPECTED) | {TWO_TERMINALS.name}


def test_readme_lists_every_example() -> None:
    section = (REPO / "README.md").read_text().split("## Client SDK", 1)[1].split("\n## ", 1)[0]
    missing = [path.name for path in EXAMPLES if f"examples/{path.name}" not in section]
    assert missing == [], f"not in the README's Client SDK list of examples: {missing}"


@pytest.mark.parametrize(
    "example", [path for path in EXAMPLES if path.name in EXPECTED], ids=lambda path: path.name
)
def test_example_runs(example: Path, supernode: SupernodeProcess) -> None:
    result = run([str(example), supernode.grpc_target], supernode.grpc_target)
    assert result.returncode == 0, result.stdout + result.stderr
    for text in EXPECTED[example.name]:
        assert text in result.stdout, result.stdout


def test_readme_sdk_code_runs(supernode: SupernodeProcess) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Client SDK", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "the README's Client SDK section has no python block"
    for code in blocks:
        result = run(["-c", code], supernode.grpc_target)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "('laptop', 'online')" in result.stdout and "updated laptop" in result.stdout


def in_order(output: str, expected: list[str]) -> list[str]:
    """The expected lines not found in ``output`` after the previous one."""
    missing, position = [], 0
    for text in expected:
        found = output.find(text, position)
        if found < 0:
            missing.append(text)
        else:
            position = found + len(text)
    return missing


def test_two_terminals(supernode: SupernodeProcess, tmp_path: Path) -> None:
    """Bob and Alice as two processes, as in two terminals; their keys and pins in files."""
    role_args = ["--target", supernode.grpc_target, "--home", str(tmp_path), "--tablet-ttl", "2"]
    processes = {
        role: subprocess.Popen(
            [sys.executable, str(TWO_TERMINALS), role, *role_args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for role in ("bob", "alice")  # Bob first: he waits for Alice
    }
    outputs: dict[str, str] = {}
    try:
        for role, process in processes.items():
            outputs[role], _ = process.communicate(timeout=120)  # the deadline
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    everything = "\n".join(f"--- {role}\n{text}" for role, text in outputs.items())
    assert [p.returncode for p in processes.values()] == [0, 0], everything
    assert in_order(outputs["bob"], EXPECTED_BOB) == [], everything
    assert in_order(outputs["alice"], EXPECTED_ALICE) == [], everything

    for name in ("alice", "bob"):  # saved once, readable by the owner only
        assert (tmp_path / f"{name}.key").stat().st_mode & 0o777 == 0o600
    pins = json.loads((tmp_path / "alice-pins.json").read_text())["pins"]
    assert pins["bob"] == Identity.load(tmp_path / "bob.key").public_key.hex()

    again = run([str(TWO_TERMINALS), "alice", "--home", str(tmp_path)], "127.0.0.1:1")
    assert "alice: loaded identity from" in again.stdout  # the second run reuses the key


def test_two_terminals_without_a_supernode_says_so(tmp_path: Path) -> None:
    target = unused_target()
    result = run([str(TWO_TERMINALS), "bob", "--home", str(tmp_path)], target)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"bob: no supernode answered at {target}" in result.stderr
