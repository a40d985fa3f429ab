"""Acceptance 7: every ``examples/*.py`` and the README's SDK code run against a real
supernode, so the documentation cannot rot."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.process import SupernodeProcess

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))

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


def test_every_example_is_checked() -> None:
    assert {path.name for path in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
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
