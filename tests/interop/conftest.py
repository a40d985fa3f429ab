"""Fixtures of the interop tests: the integration suite's real supernodes and SDK clients,
and the Node.js client, installed once per test session."""

import pytest

from tests.integration.conftest import sdk_clients as sdk_clients
from tests.integration.conftest import start_supernode as start_supernode
from tests.interop.npm import NodeClient, ensure_node_client


@pytest.fixture(scope="session")
def node_client() -> NodeClient:
    """Node.js and the client's npm packages (installed here when missing: never skipped)."""
    return ensure_node_client()
