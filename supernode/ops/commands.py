"""The operator's subcommands: their flags and what each runs. ``supernode.cli`` registers
them with :func:`add_commands` and hands a parsed command to :func:`run_command`; ``status``
(cluster, in ``supernode.cli``) gains a node mode through :func:`add_node_status_flags`.

Exit codes of every command here: 0 done; 1 the node or directory could not be reached or
said no (one line on stderr); 2 the command itself was wrong (arguments, files)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

COMMANDS = ("identity", "lookup", "search", "watch", "backup", "restore")
# Where `identity new` keeps the identity, and the data commands read it, unless told.
DEFAULT_FILE = Path("~/.config/supernode/identity.json")


def add_node_status_flags(status: argparse.ArgumentParser) -> None:
    """``status --data-dir DIR``: one node, through its admin socket."""
    node = status.add_argument_group(
        "one node (instead of the cluster): asks the node through <data-dir>/admin.sock, "
        "on its machine, as its user"
    )
    _add_admin_flags(node)


def _add_admin_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="the running node's data directory (its admin socket)"
    )
    parser.add_argument("--admin-socket", type=Path, metavar="PATH", help="the admin socket itself")


def wants_node_status(args: argparse.Namespace) -> bool:
    return args.data_dir is not None or args.admin_socket is not None


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        action="append",
        metavar="H:P",
        help="a supernode to use (repeat for several; default 127.0.0.1:7700)",
    )
    parser.add_argument("--tls-ca-file", metavar="PEM", help="CA to verify the node (sdk-ca.pem)")
    parser.add_argument(
        "--plaintext", action="store_true", help="no TLS (a node run with --tls-plaintext)"
    )


def _add_identity_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity",
        "--file",
        dest="identity",
        type=Path,
        default=DEFAULT_FILE,
        help=f"identity file to act as (default {DEFAULT_FILE})",
    )


def add_commands(commands: Any) -> None:
    identity = commands.add_parser(
        "identity",
        help="create an identity (Ed25519 key + account) for lookup, search and watch",
        description="`identity new HANDLE` makes a key, creates the account HANDLE with it, "
        "and keeps both in --file (mode 0600; an existing file is never overwritten).",
    )
    actions = identity.add_subparsers(dest="identity_action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="make a key and create its account")
    new.add_argument("handle", metavar="HANDLE")
    _add_identity_flag(new)
    new.add_argument("--display-name", default="", help="shown in search results")
    new.add_argument("--hidden", action="store_true", help="not found by search")
    _add_target_flags(new)
    new.add_argument("--json", action="store_true", help="print the account as JSON")

    lookup = commands.add_parser(
        "lookup", help="a handle's account and live devices (verified records)"
    )
    lookup.add_argument("handle", metavar="HANDLE")
    lookup.add_argument("--quorum", action="store_true", help="read a majority of replicas")
    search = commands.add_parser("search", help="discoverable accounts matching QUERY")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=int, default=0, help="at most this many (0: server's)")
    watch = commands.add_parser(
        "watch", help="follow handles' presence until Ctrl-C, --count or --timeout"
    )
    watch.add_argument("handles", metavar="HANDLE", nargs="+")
    watch.add_argument("--count", type=int, help="stop after N events (the snapshot is one)")
    watch.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    for parser, what in (
        (lookup, "one object"),
        (search, "one object"),
        (watch, "a line per event"),
    ):
        _add_identity_flag(parser)
        _add_target_flags(parser)
        parser.add_argument("--json", action="store_true", help=f"JSON: {what}")

    backup = commands.add_parser(
        "backup",
        help="a consistent checkpoint of a running node's store, while it serves",
        description="Ask the node running on --data-dir (through its admin socket) to write "
        "a RocksDB checkpoint and a manifest of checksums into DIR (absent or empty; written "
        "by the node's user). Restore with `supernode restore DIR --data-dir ...`.",
    )
    backup.add_argument("directory", metavar="DIR", type=Path)
    _add_admin_flags(backup)
    backup.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="time allowed"
    )
    backup.add_argument("--json", action="store_true", help="print the result as JSON")

    restore = commands.add_parser(
        "restore",
        help="put a backup into a stopped node's data directory (checks it first)",
        description="Check every file of BACKUP against its manifest, then copy it into "
        "--data-dir, which must be empty (or --force: its content is replaced) and not in "
        "use by a running node.",
    )
    restore.add_argument("backup", metavar="BACKUP", type=Path)
    restore.add_argument("--data-dir", type=Path, required=True, help="the node's data directory")
    restore.add_argument("--force", action="store_true", help="replace a non-empty data dir")
    restore.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command in ("backup", "restore"):
        return _backup(args, out, err) if args.command == "backup" else _restore(args, out, err)
    return _data(args, out, err)


def run_node_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from supernode.ops.admin_client import AdminError, fetch_status, socket_of
    from supernode.ops.node_status import render_node, status_document

    try:
        status = fetch_status(socket_of(args.data_dir, args.admin_socket))
    except AdminError as exc:
        print(f"supernode status: {exc}", file=err)
        return 1
    document = status_document(status, int(time.time() * 1000))
    out.write(json.dumps(document) + "\n" if args.json else render_node(document))
    return 0


def _backup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from supernode.ops.admin_client import AdminError, request_backup, socket_of

    if not wants_node_status(args):
        print("supernode backup: give the running node's --data-dir (or --admin-socket)", file=err)
        return 2
    try:
        done = request_backup(
            socket_of(args.data_dir, args.admin_socket), args.directory, args.timeout
        )
    except AdminError as exc:
        print(f"supernode backup: {exc}", file=err)
        return 2 if exc.refused else 1
    if args.json:
        out.write(
            json.dumps(
                {
                    "directory": done.directory,
                    "sequence": done.sequence,
                    "bytes": done.bytes,
                    "files": done.files,
                    "created_at_ms": done.created_at_ms,
                }
            )
            + "\n"
        )
    else:
        out.write(
            f"backup written to {done.directory}: {done.files} files, {done.bytes} bytes, "
            f"store sequence {done.sequence}\n"
        )
    return 0


def _restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from supernode.ops.backup import BackupError, restore_backup

    try:
        manifest = restore_backup(args.backup, args.data_dir, force=args.force)
    except BackupError as exc:
        print(f"supernode restore: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"supernode restore: {exc}", file=err)
        return 1
    if args.json:
        out.write(json.dumps(manifest.to_json()) + "\n")
    else:
        out.write(
            f"restored {len(manifest.files)} files ({manifest.total_bytes} bytes) of node "
            f"{manifest.node}'s backup of {manifest.created_at_ms} ms (store sequence "
            f"{manifest.sequence}) into {args.data_dir}\n"
        )
    return 0


def _data(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from supernode.ops import data
    from supernode.ops import presence_output as show

    target = data.Target(
        tuple(args.endpoint or ["127.0.0.1:7700"]), args.tls_ca_file or "", args.plaintext
    )
    path: Path = args.identity.expanduser()
    if args.command == "identity":
        code, account = data.run(
            args.command,
            data.create_identity(target, path, args.handle, args.display_name, not args.hidden),
            err,
        )
        if code == 0:
            out.write(
                json.dumps(account) + "\n"
                if args.json
                else f"created account {account['handle']}; identity kept in {account['file']}\n"
            )
        return code
    if args.command == "watch" and args.count is not None and args.count < 1:
        print("supernode watch: --count must be at least 1", file=err)
        return 2
    try:
        stored = data.load_identity(path)
    except data.CommandError as exc:
        print(f"supernode {args.command}: {exc}", file=err)
        return exc.code
    if args.command == "lookup":
        code, presence = data.run(
            args.command, data.lookup(target, stored, args.handle, args.quorum), err
        )
        if code == 0:
            out.write(
                json.dumps(show.presence_json(presence)) + "\n"
                if args.json
                else show.render_presence(presence)
            )
        return code
    if args.command == "search":
        code, results = data.run(
            args.command, data.search(target, stored, args.query, args.limit), err
        )
        if code == 0:
            out.write(
                json.dumps(show.search_json(args.query, results)) + "\n"
                if args.json
                else show.render_search(results)
            )
        return code

    def emit(event: Any) -> None:
        out.write(
            json.dumps(show.event_json(event)) + "\n" if args.json else show.render_event(event)
        )
        out.flush()

    code, _ = data.run(
        args.command, data.watch(target, stored, args.handles, emit, args.count, args.timeout), err
    )
    return code
