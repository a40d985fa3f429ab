"""Fixtures for NAT lab tests: the machine is made ready once, each test gets its own lab."""

from collections.abc import Iterator

import pytest

from tests.nat.lab import NatLab
from tests.nat.requirements import ensure_lab_ready


@pytest.fixture(scope="session", autouse=True)
def nat_lab_ready() -> None:
    """Install iproute2/iptables if missing and check the kernel, once per session.

    Raises (so every NAT test errors, loudly, with the reason) instead of skipping: a
    machine that cannot run the lab must not pass for one that tested P2P.
    """
    ensure_lab_ready()


@pytest.fixture
def nat_lab() -> Iterator[NatLab]:
    """A fresh, empty lab; closed (processes killed, namespaces deleted) after the test."""
    with NatLab() as lab:
        yield lab
