"""The SDK as an app developer installs it: a wheel built from a clean copy of the repository,
installed into a fresh virtualenv that has neither the repository on its path nor the
server's dependencies, running an example app against a real supernode.

Also the server's own distribution: ``pip install`` of a clone (no ``make gen``) gives a
``supernode`` command that serves and a ``client_sdk`` that imports.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.process import SupernodeProcess

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("rocksdict", "prometheus-client", "grpcio-tools", "grpcio-health-checking",
               "grpcio-reflection", "uvloop", "supernode")  # fmt: skip

# Run inside the fresh virtualenv: import every module of the SDK (not only those the app
# touched), run the app, then report where the SDK came from and what got imported.
APP_CHECK = """
import importlib, json, pkgutil, runpy, sys
import client_sdk
for module in pkgutil.walk_packages(client_sdk.__path__, "client_sdk."):
    importlib.import_module(module.name)
sys.argv = ["app.py", sys.argv[1]]
runpy.run_path("app.py", run_name="__main__")
print("CHECK " + json.dumps({
    "sdk_file": client_sdk.__file__,
    "server_modules": sorted(m for m in sys.modules if m.split(".")[0] == "supernode"),
    "sys_path": sys.path,
}))
"""


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def _fresh_venv(where: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    return where / "bin" / "python"


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What a fresh clone holds: the tracked files (and new, not ignored ones), nothing
    generated, no virtualenv."""
    copy = tmp_path_factory.mktemp("clone") / "supernode"
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    assert not list(copy.glob("client_sdk/protocol/v1/*_pb2*.py"))
    yield copy


@pytest.mark.slow
def test_the_sdk_wheel_installs_alone_and_runs_an_app(
    clean_copy: Path, tmp_path: Path, supernode: SupernodeProcess
) -> None:
    dist = tmp_path / "dist"
    # sdist first, then the wheel from the unpacked sdist: both must be self-contained.
    _run([sys.executable, "-m", "build", "--outdir", str(dist), "client_sdk"], cwd=clean_copy)
    (wheel,) = dist.glob("supernode_client-*.whl")
    assert list(dist.glob("supernode_client-*.tar.gz"))
    python = _fresh_venv(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path)

    installed = json.loads(
        _run([str(python), "-m", "pip", "list", "--format=json"], cwd=tmp_path).stdout
    )
    names = {package["name"].lower() for package in installed}
    assert "supernode-client" in names
    assert not names & set(SERVER_ONLY), f"server dependencies installed: {names}"

    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "examples" / "quickstart.py", app / "app.py")
    result = _run([str(python), "-c", APP_CHECK, supernode.grpc_target], cwd=app, timeout=120)
    assert "alice found bob-" in result.stdout, result.stdout
    check = json.loads(result.stdout.split("CHECK ", 1)[1])
    assert check["server_modules"] == []
    assert Path(check["sdk_file"]).is_relative_to(tmp_path / "venv")
    assert not any(str(REPO) in entry or str(clean_copy) in entry for entry in check["sys_path"])


@pytest.mark.slow
def test_pip_install_of_a_clone_gives_a_working_server(clean_copy: Path, tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "--quiet", str(clean_copy)], cwd=tmp_path)
    result = _run(
        [str(python), "-c", "import client_sdk.protocol.v1.directory_pb2, supernode.server, "
         "supernode.internal.v1.replication_pb2; print('imports ok')"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "imports ok" in result.stdout
    node = SupernodeProcess(tmp_path / "data", python=str(python), cwd=tmp_path).start()
    try:
        assert node.grpc_target  # the installed server became ready and serves
    finally:
        node.kill()
