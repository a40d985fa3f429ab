"""The command line's side of configuration: one flag per setting (``serve``, ``config``,
``check-config`` take the same ones), ``supernode config`` (the effective settings and
where each came from) and ``supernode check-config`` (every problem, without starting).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from supernode.config import SECTIONS, Resolved, env_name, flag_name, resolve, setting_names
from supernode.config_reference import field_docs, show_default

CONFIG_HELP = (
    "TOML file with [server], [lease], [limits], [cluster], [overload], [rate], [tls] tables"
)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per setting, each with its environment variable and its
    real default in the help (the flag's own default is None: "not given", so the file and
    the environment are not overridden)."""
    parser.add_argument("--config", type=Path, help=CONFIG_HELP)
    docs = {section: field_docs(cls) for section, cls in SECTIONS.items()}
    for section, name, kind, default in setting_names():
        summary = docs[section].get(name, "").split(". ")[0].rstrip(".")
        help_text = (
            f"{summary + ' ' if summary else ''}({section}.{name}; env "
            f"{env_name(section, name)}; default {show_default(default)})"
        ).replace("%", "%%")
        if kind is bool:
            parser.add_argument(
                flag_name(section, name),
                dest=f"{section}.{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag_name(section, name),
                dest=f"{section}.{name}",
                default=None,
                metavar=kind.__name__.upper(),
                help=help_text,
            )


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, as ``supernode.config.resolve`` takes them."""
    return {key: value for key, value in vars(args).items() if "." in key and value is not None}


def add_config_commands(commands: Any) -> None:
    shown = commands.add_parser(
        "config",
        help="print the effective configuration and where each value came from",
        description=(
            "Print every setting as the node would use it, in TOML (a valid --config file), "
            "each with its source: default, the file, an environment variable or a flag. "
            "Layering as for serve: --config, then SUPERNODE_* variables, then flags. "
            "Exit code 2 when the settings cannot be loaded."
        ),
    )
    add_setting_flags(shown)
    shown.add_argument("--json", action="store_true", help="one JSON object instead of TOML")
    check = commands.add_parser(
        "check-config",
        help="validate the configuration (file, environment, flags) without starting",
        description=(
            "Check what serve would be given: unknown sections, keys and SUPERNODE_* "
            "variables, wrong types and ranges, bad addresses, listeners sharing a port, TLS "
            "files missing, unreadable or not matching, plaintext the node would refuse. "
            "Prints OK (exit 0) or every problem, one per line (exit 2)."
        ),
    )
    add_setting_flags(check)
    check.add_argument("--json", action="store_true", help='{"ok": ..., "problems": [...]}')


def _resolve(args: argparse.Namespace) -> Resolved:
    return resolve(args.config, flags=given_flags(args))


def run_config(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    resolved = _resolve(args)
    for line in resolved.unknown_variables:
        print(f"supernode config: warning: {line}", file=err)
    if resolved.config is None:
        for problem in resolved.problems:
            print(f"supernode config: {problem}", file=err)
        return 2
    config = resolved.config
    if args.json:
        document = {
            section: {
                name: {
                    "value": _plain(getattr(getattr(config, section), name)),
                    "source": resolved.sources[f"{section}.{name}"],
                }
                for name in SECTIONS[section].__dataclass_fields__
            }
            for section in SECTIONS
        }
        json.dump(document, out, indent=2)
        out.write("\n")
        return 0
    current = ""
    for section, name, _, _ in setting_names():
        if section != current:
            out.write(f"{'' if not current else chr(10)}[{section}]\n")
            current = section
        value = show_default(getattr(getattr(config, section), name))
        out.write(f"{name} = {value}  # {resolved.sources[f'{section}.{name}']}\n")
    return 0


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def run_check_config(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from supernode.config_check import problems  # reads TLS material: cryptography

    found = problems(_resolve(args))
    if args.json:
        json.dump({"ok": not found, "problems": found}, out)
        out.write("\n")
    elif not found:
        print("OK", file=out)
    else:
        for problem in found:
            print(f"supernode check-config: {problem}", file=err)
    return 2 if found else 0
