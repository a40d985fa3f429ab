"""``pydoc client_sdk`` is enough to use the SDK: everything exported is documented.

Checked for every name in ``client_sdk.__all__`` and ``client_sdk.p2p.__all__``: the
object has its own docstring; every public method, property, classmethod and staticmethod
of its class (and of its bases within ``client_sdk``) has one; and the data a class
carries is listed under an ``Attributes:`` section of the class docstring (Google style,
one ``name: description`` entry per item): every dataclass field and every enum member,
and nothing that no longer exists.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re

import pytest

import client_sdk
import client_sdk.p2p

EXPORTED = sorted(
    {(module.__name__, name) for module in (client_sdk, client_sdk.p2p) for name in module.__all__}
)
_ENTRY = re.compile(r"^(\w+)(?: \([^)]*\))?:\s*(\S.*)?$")


def exported(module_name: str, name: str) -> object:
    module = client_sdk if module_name == "client_sdk" else client_sdk.p2p
    return getattr(module, name)


def documented_attributes(doc: str) -> dict[str, str]:
    """The ``Attributes:`` section of a docstring: entry name -> its description
    (continuation lines, indented deeper, are part of the entry)."""
    lines = inspect.cleandoc(doc).splitlines()
    if "Attributes:" not in lines:
        return {}
    entries: dict[str, str] = {}
    current: str | None = None
    indent: int | None = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the section ended
        if indent is None or depth == indent:
            indent = depth
            match = _ENTRY.match(line.strip())
            assert match, f"not a 'name: description' entry: {line.strip()!r}"
            current = match.group(1)
            entries[current] = match.group(2) or ""
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def public_members(cls: type) -> dict[str, object]:
    """Public callables and properties defined by ``cls`` or its ``client_sdk`` bases."""
    members: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("client_sdk"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (classmethod, staticmethod)):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                members[name] = value
    return members


def data_items(cls: type) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {field.name for field in dataclasses.fields(cls)}
    if issubclass(cls, enum.Enum):
        return set(cls.__members__)
    return set()


def test_both_packages_export_something() -> None:
    assert len(EXPORTED) > 40  # a broken __all__ would make every check vacuous


@pytest.mark.parametrize(("module", "name"), EXPORTED, ids=lambda value: str(value))
def test_exported_name_is_documented(module: str, name: str) -> None:
    obj = exported(module, name)
    own_doc = obj.__doc__ if isinstance(obj, type) else inspect.getdoc(obj)
    assert own_doc and own_doc.strip(), f"{module}.{name} has no docstring"
    if not isinstance(obj, type):
        return
    undocumented = [
        member
        for member, value in public_members(obj).items()
        if not (inspect.getdoc(value) or "").strip()
    ]
    assert undocumented == [], f"{name}: public members without a docstring: {undocumented}"

    items = data_items(obj)
    listed = documented_attributes(own_doc)
    missing = sorted(items - set(listed))
    assert missing == [], f"{name}: not under 'Attributes:' in its docstring: {missing}"
    if items:
        stale = sorted(set(listed) - items - set(public_members(obj)))
        assert stale == [], f"{name}: 'Attributes:' lists what {name} does not have: {stale}"
    empty = sorted(entry for entry in items if not listed[entry].strip())
    assert empty == [], f"{name}: 'Attributes:' entries without a description: {empty}"


def test_the_attributes_parser_reads_google_style_sections() -> None:
    doc = """Summary.

    Attributes:
        handle: who.
        seq (int): a counter,
            continued here.
        bare:

    After the section.
    """
    assert documented_attributes(doc) == {
        "handle": "who.",
        "seq": "a counter, continued here.",
        "bare": "",
    }
