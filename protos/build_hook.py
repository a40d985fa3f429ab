"""Generate the Python code of the protos: the public contract and the server's internal one.

``protos/supernode/v1`` (public) becomes ``client_sdk.protocol.v1``; ``protos/supernode/
internal/v1`` (the server's private feed) becomes ``supernode.internal.v1``. One generator
serves every build: the hatchling hook below runs it for each wheel and editable install of
both distributions (``supernode`` generates both, ``supernode-client`` only the public one,
as each pyproject's ``contracts`` says), and ``make gen`` runs this file directly. The
generated code is never committed or hand-edited.

The protos keep their public paths (``supernode/v1/directory.proto``, so reflection and
other languages see the contract under its own name), which makes protoc emit imports of
``supernode.v1``. The SDK must not import the server package, so the generated modules live
in ``client_sdk/protocol/v1`` and their imports (and the module names the protobuf runtime
records) are pointed there: the only rewrite, done here and nowhere else.
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

PUBLIC = "supernode/v1"
TARGET_PACKAGE = "client_sdk.protocol.v1"
# proto folder (under protos/) -> the Python package its code is generated into
CONTRACTS = {PUBLIC: TARGET_PACKAGE, "supernode/internal/v1": "supernode.internal.v1"}
_IMPORT = re.compile(r"^from supernode\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(r"'supernode\.v1\.(\w+_pb2)'")


def _rewrite(source: str) -> str:
    source = _IMPORT.sub(f"from {TARGET_PACKAGE} import ", source)
    return _MODULE_NAME.sub(rf"'{TARGET_PACKAGE}.\1'", source)


def generate(root: Path, contracts: list[str]) -> list[Path]:
    """Write the code of ``contracts`` (keys of ``CONTRACTS``) under ``root``; returns the
    paths written, relative to ``root``."""
    written: list[Path] = []
    for contract in contracts:
        written += _generate_one(root, contract, root / Path(*CONTRACTS[contract].split(".")))
    return written


def _generate_one(root: Path, contract: str, target: Path) -> list[Path]:
    from grpc_tools import protoc  # a build requirement, imported only when generating

    proto_root = root / "protos"
    sources = sorted((proto_root / contract).glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as out:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(str(path) for path in sources),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(p.name for p in sources)}")
        for generated in sorted((Path(out) / contract).iterdir()):
            destination = target / generated.name
            text = _rewrite(generated.read_text())
            if not destination.exists() or destination.read_text() != text:
                destination.write_text(text)
            written.append(destination.relative_to(root))
    return written


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script by `make gen`, outside a build
    pass
else:

    class ProtocolBuildHook(BuildHookInterface):  # type: ignore[misc]
        """Generates the protocol code before hatchling collects the files of a build."""

        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            # The files are written into the source tree, where an editable install imports
            # them and a wheel build collects them (the root pyproject lists them as
            # artifacts, since .gitignore hides them).
            contracts = list(self.config.get("contracts", [PUBLIC]))
            generate(Path(__file__).resolve().parent.parent, contracts)


if __name__ == "__main__":
    for path in generate(Path(__file__).resolve().parent.parent, list(CONTRACTS)):
        print(path)
    sys.exit(0)
