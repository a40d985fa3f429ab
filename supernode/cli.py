"""``supernode`` command line: ``serve``, ``status``, ``decommission``, ``dev-cluster``,
``certs``, ``config``, ``check-config``, ``--version``, and the operator's commands of
:mod:`supernode.ops.commands` (``identity``, ``lookup``, ``search``, ``watch``, ``backup``,
``restore``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from supernode import __version__
from supernode.config import ConfigError, env_name, flag_name, load, resolve
from supernode.config_cli import (
    add_config_commands,
    add_setting_flags,
    given_flags,
    run_check_config,
    run_config,
)
from supernode.logs import configure_logging
from supernode.ops import commands as ops
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
    )
    add_setting_flags(serve)
    add_config_commands(commands)
    _add_status(commands)
    _add_decommission(commands)
    _add_dev_cluster(commands)
    _add_certs(commands)
    ops.add_commands(commands)
    return parser


def _add_certs(commands: Any) -> None:
    certs = commands.add_parser(
        "certs",
        help="make a development CA and node certificates for TLS and mutual TLS",
        description=(
            "Make (or reuse) a CA in --out (ca.pem, ca-key.pem, and sdk-ca.pem for apps) and "
            "a certificate per --node, valid as server and client, with the node name and "
            "every --host as subject alternative names. Node certificates are made anew on "
            "every run (rotate by running again and restarting the node); the CA is kept. "
            "Prints each file and its SHA-256 fingerprint (what an SDK may pin)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    certs.add_argument("--out", type=Path, default=Path("certs"), help="directory to write")
    certs.add_argument(
        "--node",
        action="append",
        default=None,
        metavar="NAME",
        help="a node certificate to make (repeat; also an etcd member's); default: node",
    )
    certs.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="HOST",
        help="a name or address every node certificate is valid for (repeat); "
        "default: 127.0.0.1, ::1, localhost",
    )


def _add_etcd_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that say which cluster a command reads (``status``, ``decommission``)."""
    parser.add_argument("--config", type=Path, help="TOML file with a [cluster] table")
    parser.add_argument(
        "--etcd-endpoints",
        "--cluster-etcd-endpoints",
        dest="cluster.etcd_endpoints",
        metavar="H:P[,H:P]",
        help="etcd members (env SUPERNODE_CLUSTER_ETCD_ENDPOINTS)",
    )
    parser.add_argument(
        "--etcd-prefix",
        "--cluster-etcd-prefix",
        dest="cluster.etcd_prefix",
        metavar="PREFIX",
        help="the cluster's key prefix (env SUPERNODE_CLUSTER_ETCD_PREFIX); default /supernode",
    )
    for name, what in (
        ("cert_file", "this client's certificate for etcd's mutual TLS"),
        ("key_file", "its key"),
        ("ca_file", "the cluster CA etcd's certificate must chain to"),
    ):
        parser.add_argument(
            flag_name("tls", name),
            dest=f"tls.{name}",
            metavar="PEM",
            help=f"{what} (env {env_name('tls', name)})",
        )
    parser.add_argument(
        "--etcd-timeout-seconds",
        "--cluster-etcd-timeout-seconds",
        dest="cluster.etcd_timeout_seconds",
        metavar="SECONDS",
        help="budget per etcd read and endpoint (env SUPERNODE_CLUSTER_ETCD_TIMEOUT_SECONDS)",
    )


def _add_decommission(commands: Any) -> None:
    command = commands.add_parser(
        "decommission",
        help="take a node out of a cluster: its partitions move to the others, then it left",
        description=(
            "Mark NODE leaving: the controller moves its partitions to the other nodes a few "
            "at a time (writes go to both while they move, nothing is lost) and marks it left "
            "once it holds none; then it can be stopped. Starting it again makes it join anew. "
            "Exit code 0 once marked (with --wait: once it has left), 1 when etcd cannot be "
            "used or --wait ran out of time, 2 when NODE cannot be decommissioned."
        ),
    )
    command.add_argument("node", metavar="NODE", help="the node's name (its advertised host:port)")
    _add_etcd_flags(command)
    command.add_argument(
        "--wait", action="store_true", help="follow the moves until the node has left"
    )
    command.add_argument(
        "--wait-seconds", type=float, default=600.0, help="how long --wait follows (default 600)"
    )


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="show a cluster as etcd sees it, or one node (--data-dir)",
        description=(
            "Read the cluster's keys from etcd and print every node (up/down, address, zone, "
            "version, mirror revision and lag, partitions owned and held), the placement "
            "epoch and the controller. Exit code 1 when etcd cannot be read. Settings come "
            "as for serve: --config (TOML), then SUPERNODE_CLUSTER_* environment variables, "
            "then these flags. With --data-dir (or --admin-socket): one running node "
            "instead, asked through its admin socket (docs/operations.md)."
        ),
    )
    _add_etcd_flags(status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ops.add_node_status_flags(status)


def _add_dev_cluster(commands: Any) -> None:
    dev = commands.add_parser(
        "dev-cluster",
        help="run a local etcd and N cluster nodes on 127.0.0.1 (development only)",
        description=(
            "Start a local etcd (installed when missing) and N `supernode serve` nodes on "
            "127.0.0.1, node i on base port + i, each with its own data directory under "
            "--data-dir (kept across runs). Ctrl-C or SIGTERM stops them all. Flags after "
            "`--` go to every `serve` (after ours, so they win)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    dev.add_argument("--nodes", type=int, default=3, help="how many nodes")
    dev.add_argument("--base-port", type=int, default=7701, help="gRPC port of node 0")
    dev.add_argument(
        "--metrics-base-port", type=int, default=9701, help="metrics port of node 0 (0: free)"
    )
    dev.add_argument(
        "--stun-base-port", type=int, default=3479, help="STUN port of node 0 (0: free)"
    )
    dev.add_argument("--data-dir", type=Path, default=Path("dev-cluster"), help="state root")
    dev.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS (default: TLS and mutual TLS, certificates made in DATA_DIR/certs)",
    )
    dev.add_argument(
        "--ready-timeout-seconds", type=float, default=60.0, help="time allowed to get ready"
    )
    dev.add_argument(
        "--rolling-restart",
        action="store_true",
        help="restart every node of the dev-cluster running from --data-dir, one at a time "
        "(docs/operations.md), and print each step",
    )
    dev.add_argument(
        "--rolling-restart-seconds",
        type=float,
        default=600.0,
        help="how long --rolling-restart follows the restart",
    )
    dev.add_argument(
        "serve_args", nargs="*", default=[], metavar="-- SERVE_FLAGS", help="given to every serve"
    )


def _status(args: argparse.Namespace) -> int:
    if ops.wants_node_status(args):
        return ops.run_node_status(args, sys.stdout, sys.stderr)
    from supernode.cluster.status import run_status  # grpc import deferred (--help stays fast)
    from supernode.tls import etcd_client_tls

    flags = {key: value for key, value in vars(args).items() if "." in key and value is not None}
    try:
        config = load(args.config, flags=flags)
        tls = etcd_client_tls(config.tls)
    except ConfigError as exc:
        print(f"supernode status: {exc}", file=sys.stderr)
        return 2
    return run_status(config.cluster, as_json=args.json, out=sys.stdout, err=sys.stderr, tls=tls)


def _decommission(args: argparse.Namespace) -> int:
    from supernode.cluster.decommission import (
        CannotDecommission,
        DecommissionError,
        decommission,
    )
    from supernode.tls import etcd_client_tls

    flags = {key: value for key, value in vars(args).items() if "." in key and value is not None}
    try:
        config = load(args.config, flags=flags)
        tls = etcd_client_tls(config.tls)
    except ConfigError as exc:
        print(f"supernode decommission: {exc}", file=sys.stderr)
        return 2
    wait_s = args.wait_seconds if args.wait else None
    try:
        asyncio.run(decommission(config.cluster, args.node, wait_s=wait_s, out=sys.stdout, tls=tls))
    except DecommissionError as exc:
        print(f"supernode decommission: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, CannotDecommission) else 1
    return 0


def _dev_cluster(args: argparse.Namespace) -> int:
    from supernode.cluster.dev_cluster import (
        DevClusterPlan,
        request_rolling_restart,
        run_dev_cluster,
    )

    if args.rolling_restart:
        return request_rolling_restart(
            args.data_dir, args.rolling_restart_seconds, sys.stdout, sys.stderr
        )
    try:
        plan = DevClusterPlan(
            nodes=args.nodes,
            base_port=args.base_port,
            metrics_base_port=args.metrics_base_port,
            stun_base_port=args.stun_base_port,
            data_dir=args.data_dir,
            serve_args=tuple(args.serve_args),
            ready_timeout_s=args.ready_timeout_seconds,
            tls=not args.plaintext,
        )
    except ValueError as exc:
        print(f"supernode dev-cluster: {exc}", file=sys.stderr)
        return 2
    return run_dev_cluster(plan, sys.stdout, sys.stderr)


def _certs(args: argparse.Namespace) -> int:
    from supernode import certs

    hosts = tuple(args.host or certs.DEFAULT_HOSTS)
    try:
        ca, made = certs.load_or_make_ca(args.out)
        print(f"{'made' if made else 'kept'} CA   {args.out / certs.CA_FILE}")
        print(f"SDK CA    {args.out / certs.SDK_CA_FILE}  (give apps this, never ca-key.pem)")
        for name in args.node or ["node"]:
            cert, key = certs.write_node(args.out, ca, name, hosts)
            print(f"node {name}: {cert} {key}  sha256 {certs.fingerprint(cert.read_bytes())}")
    except (OSError, ValueError) as exc:
        print(f"supernode certs: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "certs":
        return _certs(args)
    if args.command == "status":
        return _status(args)
    if args.command == "decommission":
        return _decommission(args)
    if args.command == "dev-cluster":
        return _dev_cluster(args)
    if args.command in ops.COMMANDS:
        return ops.run_command(args, sys.stdout, sys.stderr)
    if args.command == "config":
        return run_config(args)
    if args.command == "check-config":
        return run_check_config(args)
    if args.command != "serve":
        parser.print_help()
        return 2
    from supernode.tls import node_tls

    resolved = resolve(args.config, flags=given_flags(args))
    try:
        if resolved.config is None:
            raise ConfigError(resolved.problems[0])
        config = resolved.config
        node_tls(config)  # refuses plaintext that was not asked for, before anything starts
    except ConfigError as exc:
        print(f"supernode: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.server.log_format, config.server.log_level)
    for line in resolved.unknown_variables:  # etcd's way: warned about, not refused
        logging.getLogger("supernode").warning("%s", line)
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
    from supernode.startup import StartupError

    try:
        runner(serve(config))
    except (StartupError, ConfigError) as exc:  # ConfigError: an address that is not host:port
        print(f"supernode: {exc}", file=sys.stderr)
        return 2
    except (StoreError, OSError) as exc:
        print(f"supernode: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
