"""The configuration reference in docs/operations.md, generated from the config schema.

The schema is ``supernode.config.SECTIONS``: each section a dataclass, each field a setting
with its type and default, its environment variable and flag (``env_name``, ``flag_name``).
A setting's documentation is the ``#`` comment block right above its field (or a comment
after it on the same line), as the sections' modules already write them: so adding a
setting stays a one-line change, and its comment is its documentation. The generated text
sits between two markers in docs/operations.md; a unit test checks that the committed text
equals what this module makes, so the reference cannot drift from the code.

Regenerate: ``python -m supernode.config_reference`` (``--check``: exit 1 if stale).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from supernode.config import SECTIONS, env_name, flag_name, setting_names

BEGIN = "<!-- BEGIN configuration reference (python -m supernode.config_reference) -->"
END = "<!-- END configuration reference -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"

_FIELD = re.compile(r"^(\s+)(\w+)\s*:[^=]*(=.*)?$")


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Field name -> its comment (the block above it, then a trailing one), joined into
    one paragraph; fields without a comment are left out."""
    lines, _ = inspect.getsourcelines(cls)
    body_indent: str | None = None
    pending: list[str] = []
    docs: dict[str, str] = {}
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("class "))
    for line in lines[start + 1 :]:
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if body_indent is None and stripped:
            body_indent = indent
        if stripped.startswith("#") and indent == body_indent:
            pending.append(stripped.lstrip("#").strip())
            continue
        code, _, trailing = line.partition("  #")
        match = _FIELD.match(code.rstrip())
        if match and match.group(1) == body_indent and not stripped.startswith("def "):
            text = [*pending, trailing.strip()] if trailing else pending
            if text:
                docs[match.group(2)] = " ".join(part for part in text if part)
        if stripped.startswith("def "):
            break  # fields come before methods in every section
        pending = []
    return docs


def section_doc(cls: type[Any]) -> str:
    """The first paragraph of the section class's docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split())


def show_default(value: Any) -> str:
    """A value as it is written in the TOML file (a JSON string is a TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    return repr(value)


def render() -> str:
    """The reference: one heading per section, one entry per setting, in schema order."""
    out = [
        "Every setting, generated from the schema (`supernode/config.py` and the sections'",
        "modules). Each is set in the TOML file's table (`--config`), by its environment",
        "variable, or by its flag; later wins. `supernode config` prints the effective",
        "values and where each came from; `supernode check-config` validates them.",
    ]
    docs = {section: field_docs(cls) for section, cls in SECTIONS.items()}
    current = ""
    for section, name, kind, default in setting_names():
        if section != current:
            current = section
            out += ["", f"#### `[{section}]`", "", section_doc(SECTIONS[section]), ""]
        entry = (
            f"- **`{name}`** ({kind.__name__}, default `{show_default(default)}`; "
            f"`{env_name(section, name)}`, `{flag_name(section, name)}`)"
        )
        doc = docs[section].get(name)
        out.append(f"{entry}: {doc}" if doc else entry)
    return "\n".join(out) + "\n"


def splice(document: str, reference: str) -> str:
    """``document`` with the text between the markers replaced by ``reference``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers are missing: {BEGIN!r} ... {END!r}")
    return f"{document[: start + len(BEGIN)]}\n{reference}{document[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supernode.config_reference",
        description="Regenerate the configuration reference in docs/operations.md.",
    )
    parser.add_argument("--doc", type=Path, default=DOC, help="the document to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is stale")
    args = parser.parse_args(argv)
    document = args.doc.read_text()
    updated = splice(document, render())
    if args.check:
        if updated != document:
            print(f"{args.doc}: the configuration reference is stale", file=sys.stderr)
            return 1
        return 0
    args.doc.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
