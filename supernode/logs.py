"""How a supernode process logs: plain text for a terminal, or JSON lines for a collector.

``[server] log_format = "json"`` (``--log-format json``, ``SUPERNODE_LOG_FORMAT``) writes
one JSON object per line: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``msg`` (the formatted message), ``worker`` in a worker process, ``exc`` with a traceback,
and every structured field a call passed as ``extra={...}`` (the ready line's addresses,
a sweep's counts, a refusal summary's counts). What is logged never holds a token, a
signature or a device endpoint (tests/integration/test_log_hygiene.py, both formats).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")

# What every LogRecord carries; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, structured fields at the top level."""

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._fields = fields or {}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **self._fields,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str, level: str, *, worker: int | None = None) -> None:
    """The root logger of this process: stderr, ``level``, text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(None if worker is None else {"worker": worker}))
    else:
        name = "%(name)s" if worker is None else f"%(name)s[{worker}]"
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {name} %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
