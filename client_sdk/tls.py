"""How the SDK secures its channels to supernodes: TLS, verified, unless the app says not.

Three ways to trust a supernode (``ClientConfig.tls``):

* the system's roots (the default): a supernode with a certificate from a public CA;
* a CA bundle (``Tls(ca_file=...)`` or ``Tls(ca_pem=...)``): a private or development CA,
  such as the ``sdk-ca.pem`` that ``supernode certs`` writes;
* pinned certificates (``Tls(pinned_sha256=(...))``): the SHA-256 fingerprints of the
  supernodes' own certificates. gRPC cannot check a fingerprint itself, so on first use of
  a target the SDK reads the certificate the supernode presents, refuses it
  (:class:`client_sdk.errors.CertificateMismatch`) unless its fingerprint is pinned, and
  then opens the channel trusting exactly that certificate: a different certificate on the
  real connection fails the handshake, so nothing unpinned is ever trusted.

Plaintext only with ``ClientConfig(plaintext=True)``, for a development supernode started
with ``--tls-plaintext``. The host name dialled must be one of the certificate's names
(``server_name`` overrides the name checked, say when dialling an address).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from client_sdk.errors import CertificateMismatch

_HEX = frozenset("0123456789abcdef")


def normalize_fingerprint(text: str) -> str:
    """Lower-case hex without separators (``AB:CD:..`` and ``abcd..`` are the same pin)."""
    fingerprint = text.replace(":", "").replace(" ", "").lower()
    if len(fingerprint) != 64 or not set(fingerprint) <= _HEX:
        raise ValueError(f"pinned_sha256: {text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return fingerprint


@dataclass(frozen=True)
class Tls:
    """How the supernode's certificate is verified (see the module docstring).

    Attributes:
        ca_file: PEM file of the CA(s) to trust instead of the system's roots.
        ca_pem: the same as bytes (give one of ``ca_file`` and ``ca_pem``).
        pinned_sha256: fingerprints of the supernodes' certificates, hex (``:`` allowed);
            one per node of a cluster. Replaces CA verification.
        server_name: the name the certificate must carry, when not the target's host.
    """

    ca_file: str = ""
    ca_pem: bytes = b""
    pinned_sha256: tuple[str, ...] = ()
    server_name: str = ""

    def __post_init__(self) -> None:
        if self.ca_file and self.ca_pem:
            raise ValueError("tls: give ca_file or ca_pem, not both")
        pins = tuple(normalize_fingerprint(p) for p in self.pinned_sha256)
        object.__setattr__(self, "pinned_sha256", pins)
        if pins and (self.ca_file or self.ca_pem):
            raise ValueError("tls: pinned_sha256 replaces the CA; give one or the other")

    @property
    def default(self) -> bool:
        """Whether nothing was set: verification against the system's roots."""
        return self == Tls()

    def root_certificates(self) -> bytes | None:
        """The CA bundle to verify against; None for the system's roots."""
        if self.ca_pem:
            return self.ca_pem
        if self.ca_file:
            return Path(self.ca_file).read_bytes()
        return None

    def channel_options(self) -> tuple[tuple[str, str], ...]:
        """gRPC options these settings add to every channel (the name checked)."""
        if not self.server_name:
            return ()
        return (("grpc.ssl_target_name_override", self.server_name),)


class ChannelSecurity:
    """The credentials of each target's channel (None: plaintext), made once per target.

    The CA file is read here, when the client is made, so a wrong path fails at once
    (``OSError``) rather than as unreachable supernodes. With pins, the first use of a
    target reads its certificate (:func:`presented_certificate`); a failure to reach it
    raises ``OSError`` (the caller retries as for any unreachable target) and is not
    remembered."""

    def __init__(self, tls: Tls, *, plaintext: bool) -> None:
        self.tls = tls
        self.plaintext = plaintext
        self._by_target: dict[str, grpc.ChannelCredentials] = {}
        self._shared: grpc.ChannelCredentials | None = None
        if not plaintext and not tls.pinned_sha256:
            self._shared = grpc.ssl_channel_credentials(tls.root_certificates())

    async def credentials(self, target: str, within_s: float) -> grpc.ChannelCredentials | None:
        if self.plaintext:
            return None
        if self._shared is not None:
            return self._shared
        known = self._by_target.get(target)
        if known is None:
            der = await presented_certificate(target, self.tls.server_name, within_s)
            served = hashlib.sha256(der).hexdigest()
            if served not in self.tls.pinned_sha256:
                raise CertificateMismatch(target, served)
            known = grpc.ssl_channel_credentials(ssl.DER_cert_to_PEM_cert(der).encode())
            self._by_target[target] = known
        return known


def split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"target {target!r} is not host:port")
    return host.strip("[]"), int(port)


async def presented_certificate(target: str, server_name: str, within_s: float) -> bytes:
    """The DER certificate a supernode presents at ``target`` (unverified: the caller
    compares it with its pins before trusting it)."""
    host, port = split_target(target)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    async with asyncio.timeout(within_s):
        _, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_name or host
        )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    if not der:
        raise OSError(f"{target} presented no certificate")
    return bytes(der)
