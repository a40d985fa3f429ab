"""The build hook of the ``supernode-client`` distribution (never part of the wheel).

The generator is the repository's ``protos/build_hook.py``: at ``../protos`` when building
from a clone, at ``protos/`` inside this distribution's sdist. Hatchling finds the hook
class in this module's namespace.
"""

import importlib.util
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SCRIPT = next(
    path
    for path in (_HERE.parent / "protos" / "build_hook.py", _HERE / "protos" / "build_hook.py")
    if path.is_file()
)
_spec = importlib.util.spec_from_file_location("supernode_protocol_build_hook", _SCRIPT)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
ProtocolBuildHook = _module.ProtocolBuildHook
