"""Generate the Python code of the protos: the public contract and the server's internal one.

``protos/supernode/v1`` (public) becomes ``client_sdk.protocol.v1``; ``protos/supernode/
internal/v1`` (the server's private feed) becomes ``supernode.internal.v1``. One generator
serves every build: the hatchling hook below runs it for each wheel and editable install of
both distributions (``supernode`` generates both contracts, ``supernode-client`` only the
public one, as each pyproject's hook table says), and ``make gen`` runs this file directly.
The generated code is never committed or hand-edited.

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

TARGET_PACKAGE = "client_sdk.protocol.v1"
REPOSITORY = Path(__file__).resolve().parent.parent
# The repository's contracts: proto folder (under protos/) -> where its code is written.
CONTRACTS = {
    "supernode/v1": REPOSITORY / "client_sdk" / "protocol" / "v1",
    "supernode/internal/v1": REPOSITORY / "supernode" / "internal" / "v1",
}
_IMPORT = re.compile(r"^from supernode\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(r"'supernode\.v1\.(\w+_pb2)'")


def _rewrite(source: str) -> str:
    source = _IMPORT.sub(f"from {TARGET_PACKAGE} import ", source)
    return _MODULE_NAME.sub(rf"'{TARGET_PACKAGE}.\1'", source)


def generate(proto_root: Path, contracts: dict[str, Path]) -> list[Path]:
    """Write the code of each contract (a folder under ``proto_root``) into its folder;
    returns the paths written."""
    written: list[Path] = []
    for contract, target in contracts.items():
        written += _generate_one(proto_root, contract, target)
    return written


def _generate_one(proto_root: Path, contract: str, target: Path) -> list[Path]:
    from grpc_tools import protoc  # a build requirement, imported only when generating

    sources = sorted((proto_root / contract).glob("*.proto"))
    if not sources:
        raise RuntimeError(f"no .proto files in {proto_root / contract}")
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
            written.append(destination)
    return written


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script by `make gen`, outside a build
    pass
else:

    class ProtocolBuildHook(BuildHookInterface):  # type: ignore[misc]
        """Generates the protocol code before hatchling collects the files of a build.

        Its table in a pyproject names ``protos`` (folders holding the protos, relative to
        that project, the first that exists wins: a clone's ``../protos`` or an sdist's own
        ``protos``) and ``contracts`` (proto folder -> output folder in that project).
        """

        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            # The files are written into the source tree, where an editable install imports
            # them and a wheel build collects them (the root pyproject lists them as
            # artifacts, since .gitignore hides them).
            root = Path(self.root)
            candidates = [root / folder for folder in self.config.get("protos", ["protos"])]
            proto_root = next((c for c in candidates if c.is_dir()), None)
            if proto_root is None:
                raise RuntimeError(f"no protos folder among {[str(c) for c in candidates]}")
            contracts = {name: root / out for name, out in self.config["contracts"].items()}
            generate(proto_root, contracts)


if __name__ == "__main__":
    for path in generate(REPOSITORY / "protos", CONTRACTS):
        print(path.relative_to(REPOSITORY))
    sys.exit(0)
