"""``supernode`` command line: ``serve`` and ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from supernode import __version__
from supernode.config import ConfigError, env_name, flag_name, load, setting_names
from supernode.store import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supernode",
        description="User directory and rendezvous server: signed device presence over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"supernode {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a supernode (embedded RocksDB; no other setup)",
        description=(
            "Run one supernode. Settings come from defaults, then --config (TOML), then "
            "SUPERNODE_* environment variables, then these flags."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument(
        "--config", type=Path, help="TOML file with [server], [lease], [limits] tables"
    )
    for section, name, kind, default in setting_names():
        help_text = f"{section}.{name} (env {env_name(section, name)})"
        dest = f"{section}.{name}"
        if kind is bool:
            serve.add_argument(
                flag_name(section, name),
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text}; default {default}",
            )
        else:
            serve.add_argument(
                flag_name(section, name),
                dest=dest,
                default=None,
                metavar=kind.__name__.upper(),
                help=f"{help_text}; default {default}",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    flags: dict[str, Any] = {
        key: value for key, value in vars(args).items() if "." in key and value is not None
    }
    try:
        config = load(args.config, flags=flags)
    except ConfigError as exc:
        print(f"supernode: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Worker processes are started with fork+exec and never use gRPC before the exec, so
    # gRPC's fork handlers have nothing to protect (and log a line on every start).
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from supernode.server import serve  # grpc import deferred so --help stays fast

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config))
    except (StoreError, OSError) as exc:
        print(f"supernode: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
