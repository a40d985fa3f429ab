"""Self-signed Ed25519 certificates for a device's transport key, and pinning checks.

The certificate only carries the key for TLS; trust comes from the device record signed
by the account key, whose ``transport_key`` must equal the certificate's public key.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

# TLS needs a name in subjectAltName; the pin is the key, so one fixed name serves all.
PEER_SERVER_NAME = "peer.supernode.invalid"


class CertificateMismatch(Exception):
    """A peer's certificate does not carry the transport key of its signed record."""


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def self_signed(key: Ed25519PrivateKey, *, days: int = 7) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PEER_SERVER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(PEER_SERVER_NAME)]), critical=False
        )
        .sign(key, algorithm=None)
    )


def check_pinned(certificate_der: bytes, transport_key: bytes) -> x509.Certificate:
    """Parse a peer's certificate and insist its key is the signed record's transport key."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except ValueError as exc:
        raise CertificateMismatch("peer certificate: not a DER X.509 certificate") from exc
    key = certificate.public_key()
    if not isinstance(key, Ed25519PublicKey) or raw_public_key(key) != transport_key:
        raise CertificateMismatch(
            "peer certificate: its key is not the transport key of the peer's signed record"
        )
    return certificate


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)
