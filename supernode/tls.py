"""A node's TLS material and the rules that decide whether it may serve without it.

Pure apart from reading the files ``[tls]`` names: ``supernode.transport`` turns the
material into gRPC credentials, and the command line calls :func:`node_tls` before anything
starts, so a refused setting is one line on stderr and exit code 2, never a traceback.

The rules (README "TLS"):

* ``tls.cert_file`` + ``tls.key_file``: the public port (and each worker's copy of it)
  speaks TLS only. In a cluster ``tls.ca_file`` is required too: the same certificate is the
  node's client certificate towards its peers and etcd, and peers and etcd are verified
  against that CA (mutual TLS, docs/cluster.md "Transport security").
* No certificate: the node refuses to start unless ``tls.plaintext`` says plaintext is
  meant, and even then only on a loopback address unless ``tls.public_plaintext`` says
  that plaintext on the network is intended. A bearer token seen on the wire is an
  account taken over, so plaintext is never what a node does by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from supernode.config import Config, ConfigError, TlsSettings, split_host_port

_CERTS_HINT = "`supernode certs` makes a development CA and node certificates"


@dataclass(frozen=True)
class NodeTls:
    """PEM bytes: the node's certificate chain and key, and the cluster CA (may be empty
    for a node alone)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes = b""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; a unix socket path is local too."""
    host = host.strip("[]")
    if host == "localhost" or host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def certificate_names_node(names: Iterable[str], node: str) -> bool:
    """Whether a certificate with subject alternative ``names`` may speak for ``node``
    (its ``host:port`` name): the host must be one of them. A peer's certificate has to
    carry that host anyway (peers dial it and verify its server certificate), so this
    costs nothing and keeps one node's certificate from vouching for another's name."""
    host = node.rpartition(":")[0] or node
    host = host.strip("[]").lower()
    for name in names:
        candidate = name.strip().lower()
        if candidate == host:
            return True
        try:  # the same address written differently (::1 and 0:0:...:1)
            if ipaddress.ip_address(candidate) == ipaddress.ip_address(host):
                return True
        except ValueError:
            continue
    return False


def plaintext_refusal(config: Config) -> str | None:
    """Why a node without TLS must not start with ``config``, or None when it may."""
    tls, listen = config.tls, config.server.listen
    if tls.enabled:
        return None
    if not (tls.plaintext or tls.public_plaintext):
        return (
            "no TLS configured: give --tls-cert-file and --tls-key-file ([tls] cert_file, "
            f"key_file; {_CERTS_HINT}), or --tls-plaintext to serve plaintext on loopback "
            "for development"
        )
    host, _ = split_host_port(listen, "listen")
    if not tls.public_plaintext and not is_loopback(host):
        return (
            f"listen {listen}: plaintext on a non-loopback address would expose every "
            "token and lookup; configure TLS (--tls-cert-file, --tls-key-file), or pass "
            "--tls-public-plaintext if plaintext there is intended (a TLS proxy in front)"
        )
    return None


def node_tls(config: Config) -> NodeTls | None:
    """The node's TLS material, or None for plaintext that the rules allow.

    Raises ``ConfigError`` (one line, naming the setting and what to do) when the node
    must not start: plaintext not asked for or not allowed on its address, a file that
    cannot be read, a key that is not the certificate's, a cluster without its CA."""
    refusal = plaintext_refusal(config)
    if refusal is not None:
        raise ConfigError(refusal)
    if not config.tls.enabled:
        return None
    material = load_material(config.tls)
    if config.cluster.enabled and not material.ca_pem:
        raise ConfigError(
            "tls.ca_file: a cluster with TLS needs the cluster CA (--tls-ca-file): nodes "
            f"and etcd authenticate each other with it ({_CERTS_HINT})"
        )
    return material


def etcd_client_tls(settings: TlsSettings) -> NodeTls | None:
    """What an operator's command (``supernode status``, ``decommission``) shows etcd:
    the certificate given, or nothing (an etcd without TLS)."""
    return load_material(settings) if settings.enabled else None


def load_material(settings: TlsSettings) -> NodeTls:
    """Read and check the files of ``settings`` (certificate and key must belong together,
    so a mix-up is reported here rather than as a failed handshake on the first call)."""
    cert = _read("tls.cert_file", settings.cert_file)
    key = _read("tls.key_file", settings.key_file)
    ca = _read("tls.ca_file", settings.ca_file) if settings.ca_file else b""
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError as exc:
        raise ConfigError(f"tls.cert_file {settings.cert_file}: not a PEM certificate") from exc
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"tls.key_file {settings.key_file}: not an unencrypted PEM private key"
        ) from exc
    if ca:
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as exc:
            raise ConfigError(f"tls.ca_file {settings.ca_file}: not a PEM certificate") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, public) != leaf.public_key().public_bytes(
        der, public
    ):
        raise ConfigError(
            f"tls.key_file {settings.key_file}: not the key of tls.cert_file {settings.cert_file}"
        )
    return NodeTls(cert, key, ca)


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot be read ({exc.strerror})") from exc
