"""The protos state the server's rules (``protos/supernode/v1/directory.proto``'s header
names the conventions): every ``Limit: <section>.<name> = <value>`` line must equal the
server's default, every ``Pattern: protocol.<NAME> = <regex>`` the grammar it checks, and
every proto declares the options other languages generate from. A default changed without
its comment fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from client_sdk.protocol import validation
from supernode.config import SECTIONS
from supernode.directory import search
from supernode.rendezvous.relay import RelayLimits
from supernode.sessions import SessionAuthority

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "supernode"
LIMIT = re.compile(r"^\s*//\s*Limit:\s*(\w+)\.(\w+)\s*=\s*(\S+)\s*$")
PATTERN = re.compile(r"^\s*//\s*Pattern:\s*protocol\.(\w+)\s*=\s*(\S+)\s*$")
MARKED = re.compile(r"^\s*//\s*(Limit|Pattern):")
MODULES: dict[str, ModuleType] = {"protocol": validation, "search": search}


def default(section: str, name: str) -> object:
    """The server's default of ``section.name``: a configuration setting, a protocol or
    server constant, or a fixed default of the relay or the session authority."""
    if section in SECTIONS:
        return getattr(SECTIONS[section](), name)
    if section in MODULES:
        return getattr(MODULES[section], name)
    if section == "relay":
        return getattr(RelayLimits(), name)
    if section == "sessions":
        return inspect.signature(SessionAuthority).parameters[name].default
    raise KeyError(f"unknown section {section!r}")


def marked_lines() -> list[tuple[str, int, str]]:
    lines = []
    for path in sorted(PROTOS.rglob("*.proto")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if MARKED.match(line):
                lines.append((path.name, number, line))
    return lines


def test_enough_rules_are_marked_to_mean_something() -> None:
    lines = marked_lines()
    assert sum(1 for *_, line in lines if "Limit:" in line) >= 40
    assert sum(1 for *_, line in lines if "Pattern:" in line) >= 5


@pytest.mark.parametrize(("file", "number", "line"), marked_lines())
def test_each_marked_rule_is_the_servers(file: str, number: int, line: str) -> None:
    where = f"{file}:{number}: {line.strip()}"
    if (limit := LIMIT.match(line)) is not None:
        section, name, text = limit.groups()
        expected = default(section, name)
        stated = float(text) if "." in text else int(text)
        assert type(stated) is type(expected) and stated == expected, (where, expected)
    elif (pattern := PATTERN.match(line)) is not None:
        name, regex = pattern.groups()
        assert getattr(validation, name).pattern == regex, where
    else:
        pytest.fail(f"{where}: not of the form the header of directory.proto describes")


def test_the_derived_tombstone_retention_stated_is_the_servers() -> None:
    from supernode.directory.lease import LeasePolicy

    text = (PROTOS / "v1" / "directory.proto").read_text()
    retention_s = LeasePolicy().tombstone_retention_ms // 1000
    assert f"({retention_s} s by\n  // default)" in text


@pytest.mark.parametrize("path", sorted(PROTOS.rglob("*.proto")), ids=lambda p: p.name)
def test_every_proto_names_its_package_for_other_languages(path: Path) -> None:
    text = path.read_text()
    for option in ("go_package", "java_package", "java_multiple_files", "csharp_namespace"):
        assert re.search(rf"^option {option} = ", text, re.MULTILINE), (path.name, option)
    go_package = re.search(r'^option go_package = "([^";]+);(\w+)";', text, re.MULTILINE)
    assert go_package is not None, path.name
