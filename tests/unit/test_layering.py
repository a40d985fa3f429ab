"""The import rules that keep the SDK installable alone (checked on the source, without
importing it; tests/integration/test_sdk_wheel.py checks the installed wheel at run time)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _sources(package: str) -> list[Path]:
    return [p for p in sorted((REPO / package).rglob("*.py")) if "_pb2" not in p.name]


def _offenders(package: str, allowed: str, forbidden: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in _sources(package):
        bad = [
            name
            for name in _imports(path)
            if (name == forbidden or name.startswith(forbidden + "."))
            and not (name == allowed or name.startswith(allowed + "."))
        ]
        if bad:
            found[str(path.relative_to(REPO))] = sorted(bad)
    return found


def test_the_sdk_imports_nothing_of_the_server() -> None:
    assert _sources("client_sdk")
    assert _offenders("client_sdk", allowed="client_sdk", forbidden="supernode") == {}


def test_the_protocol_layer_imports_nothing_else_of_the_sdk() -> None:
    assert _sources("client_sdk/protocol")
    assert (
        _offenders("client_sdk/protocol", allowed="client_sdk.protocol", forbidden="client_sdk")
        == {}
    )
    assert _offenders("client_sdk/protocol", allowed="-", forbidden="supernode") == {}


def _importers(package: str, module: str) -> list[str]:
    return sorted(
        str(path.relative_to(REPO))
        for path in _sources(package)
        if any(name == module or name.startswith(module + ".") for name in _imports(path))
    )


def test_only_the_etcd_adapter_imports_the_etcd_client() -> None:
    assert _importers("supernode", "aetcd") == ["supernode/cluster/etcd.py"]


def test_only_the_store_imports_rocksdb() -> None:
    assert _importers("supernode", "rocksdict") == ["supernode/store.py"]


def test_the_domain_and_the_edge_know_nothing_of_the_cluster() -> None:
    """The cluster builds on the directory, the rendezvous and the gRPC edge, never the
    other way round (a node alone runs without the cluster package)."""
    for package in ("supernode/directory", "supernode/rendezvous", "supernode/rpc"):
        assert _importers(package, "supernode.cluster") == [], package
    assert _importers("supernode/directory", "supernode.rpc") == []


def test_every_server_port_and_channel_of_the_server_is_made_in_one_module() -> None:
    """TLS (a later change) must change supernode/transport.py and nothing else."""
    makers = ("insecure_channel", "secure_channel", "add_insecure_port", "add_secure_port")
    found = sorted(
        str(path.relative_to(REPO))
        for path in _sources("supernode")
        if any(maker in path.read_text() for maker in (*makers, "grpc.aio.server("))
    )
    assert found == ["supernode/transport.py"]


def test_no_code_of_ours_uses_asyncio_wait_for() -> None:
    """On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives as the awaited
    thing completes (CPython gh-86296, fixed by 3.12's rewrite over ``asyncio.timeout``): a
    cancelled loop then goes on running. That made a node's stop hang (the controller loop
    woke as it was cancelled, and the bounded cluster stop waited on it for good). Use
    ``async with asyncio.timeout(...)``, which is correct on every supported version."""
    found = sorted(
        str(path.relative_to(REPO))
        for package in ("supernode", "client_sdk", "benchmarks", "tests")
        for path in _sources(package)
        if path.name != "test_layering.py" and "asyncio.wait_for(" in path.read_text()
    )
    assert found == []
