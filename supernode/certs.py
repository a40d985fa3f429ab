"""Development certificates: a cluster CA and node certificates, made with ``cryptography``.

``supernode certs`` and ``supernode dev-cluster`` use this to make, in one step, what TLS and
mutual TLS need (README "TLS"): a CA (``ca.pem``, its key ``ca-key.pem``), one certificate per
node (``<name>.pem`` and ``<name>-key.pem``) valid both as a server (the public and peer
ports, etcd) and as a client (calls to peers and to etcd), and ``sdk-ca.pem``, the file an
app's SDK trusts (the CA certificate alone, never its key).

Each node certificate names, as subject alternative names, the node's name and the hosts it
is reached at (by default 127.0.0.1, ::1 and localhost), because a TLS client checks the
name it dialled against them. Keys are ECDSA P-256: small, fast, accepted everywhere.

A production cluster takes its certificates from its own PKI instead; nothing here is
needed at run time.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SDK_CA_FILE = "sdk-ca.pem"
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
# Long enough that a development setup never meets an expiry, short of the 825-day cap
# some clients put on leaf certificates; rotation is by restart (docs/operations.md).
CA_DAYS = 3650
NODE_DAYS = 825


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str = "supernode dev CA", days: int = CA_DAYS) -> Issued:
    """A self-signed CA that may sign node certificates and nothing below them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key, days, is_ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    days: int,
    *,
    is_ca: bool,
) -> x509.CertificateBuilder:
    """What a CA and a node certificate share: names, key, validity from five minutes ago
    (clocks a little behind still accept it), basic constraints and key usage (a CA signs
    certificates and CRLs only, a node signs handshakes only)."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def subject_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, the rest as DNS names (a host:port keeps only its host)."""
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in names:
        host = _host_of(raw.strip())
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _host_of(name: str) -> str:
    if name.startswith("["):  # [::1]:7701
        return name[1 : name.index("]")] if "]" in name else name
    host, sep, port = name.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return name


def make_node(
    ca: Issued, name: str, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = NODE_DAYS
) -> Issued:
    """A certificate for node ``name``, signed by ``ca``: server and client in one, so the
    same file serves the node's ports and authenticates it to peers and to etcd."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key made by supernode certs")
    key = ec.generate_private_key(ec.SECP256R1())
    sans = subject_names([name, *hosts])
    if not sans:
        raise ValueError("a node certificate needs at least one name or host")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, ca_cert.subject, key, days, is_ca=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of a certificate (hex), what an SDK pins."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


def node_file_names(name: str) -> tuple[str, str]:
    """``(cert, key)`` file names of node ``name`` in a certs directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{safe}.pem", f"{safe}-key.pem"


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write atomically; a key is readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def load_or_make_ca(directory: Path) -> tuple[Issued, bool]:
    """The CA in ``directory``, made there first if absent; True when it was made."""
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return Issued(cert_path.read_bytes(), key_path.read_bytes()), False
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    _write(key_path, ca.key_pem, private=True)
    _write(cert_path, ca.cert_pem, private=False)
    _write(directory / SDK_CA_FILE, ca.cert_pem, private=False)
    return ca, True


def write_node(
    directory: Path, ca: Issued, name: str, hosts: Sequence[str] = DEFAULT_HOSTS
) -> tuple[Path, Path]:
    """Make node ``name``'s certificate and key in ``directory``; their paths."""
    issued = make_node(ca, name, hosts)
    cert_name, key_name = node_file_names(name)
    _write(directory / key_name, issued.key_pem, private=True)
    _write(directory / cert_name, issued.cert_pem, private=False)
    return directory / cert_name, directory / key_name


def ensure_node(
    directory: Path, name: str, hosts: Sequence[str] = DEFAULT_HOSTS
) -> tuple[Path, Path]:
    """Node ``name``'s certificate and key in ``directory``, made (with the CA) if absent."""
    cert_name, key_name = node_file_names(name)
    cert_path, key_path = directory / cert_name, directory / key_name
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    ca, _ = load_or_make_ca(directory)
    return write_node(directory, ca, name, hosts)
