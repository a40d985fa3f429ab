"""Transport security without a server: dev certificates (``supernode.certs``), the rules
that decide whether a node may start without TLS (``supernode.tls``), and the SDK's TLS
settings (``client_sdk.tls``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from client_sdk import Client, ClientConfig, Identity, Tls
from client_sdk.tls import normalize_fingerprint
from supernode import certs
from supernode.cli import main
from supernode.config import ConfigError, load
from supernode.tls import certificate_names_node, is_loopback, node_tls, plaintext_refusal


@pytest.fixture(scope="module")
def ca() -> certs.Issued:
    return certs.make_ca()


def test_a_node_certificate_is_server_and_client_for_its_names(ca: certs.Issued) -> None:
    issued = certs.make_node(ca, "10.0.0.5:7701", ["127.0.0.1", "::1", "localhost", "sn1"])
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.5"),  # the node name's host, without its port
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "sn1"}
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)  # raises unless the CA signed it
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert len(certs.fingerprint(issued.cert_pem)) == 64


def test_certs_command_keeps_the_ca_and_makes_nodes(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--node", "a", "--node", "b"]) == 0
    ca_before = (out / "ca.pem").read_bytes()
    assert (out / "sdk-ca.pem").read_bytes() == ca_before  # the CA certificate, no key
    assert (out / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert (out / "a-key.pem").stat().st_mode & 0o777 == 0o600
    a_before = (out / "a.pem").read_bytes()
    assert main(["certs", "--out", str(out), "--node", "a"]) == 0  # rotation: run again
    assert (out / "ca.pem").read_bytes() == ca_before
    assert (out / "a.pem").read_bytes() != a_before
    ca_cert = x509.load_pem_x509_certificate(ca_before)
    for name in ("a", "b"):
        x509.load_pem_x509_certificate(
            (out / f"{name}.pem").read_bytes()
        ).verify_directly_issued_by(ca_cert)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plaintext_must_be_asked_for_and_stays_on_loopback() -> None:
    bare = load(environ={})
    refusal = plaintext_refusal(bare)
    assert refusal is not None and "--tls-plaintext" in refusal and "--tls-cert-file" in refusal
    assert plaintext_refusal(load(environ={}, flags={"tls.plaintext": "true"})) is None
    public = load(environ={}, flags={"tls.plaintext": "true", "server.listen": "0.0.0.0:7700"})
    refusal = plaintext_refusal(public)
    assert refusal is not None and "0.0.0.0:7700" in refusal and "--tls-public-plaintext" in refusal
    intended = load(
        environ={}, flags={"tls.public_plaintext": "true", "server.listen": "0.0.0.0:7700"}
    )
    assert plaintext_refusal(intended) is None and node_tls(intended) is None
    from_env = load(environ={"SUPERNODE_TLS_PLAINTEXT": "1"})  # every way a setting comes
    assert from_env.tls.plaintext


def test_contradictory_tls_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="give both or neither"):
        load(environ={}, flags={"tls.cert_file": "a.pem"})
    with pytest.raises(ConfigError, match="choose one"):
        load(
            environ={},
            flags={"tls.cert_file": "a.pem", "tls.key_file": "k.pem", "tls.plaintext": "true"},
        )


def test_node_tls_reads_and_checks_the_files(tmp_path: Path, ca: certs.Issued) -> None:
    cert, key = certs.write_node(tmp_path, ca, "n1")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    flags = {"tls.cert_file": str(cert), "tls.key_file": str(key)}
    material = node_tls(load(environ={}, flags=flags))
    assert material is not None and material.cert_pem == cert.read_bytes()
    cluster = {**flags, "cluster.etcd_endpoints": "127.0.0.1:2379"}
    with pytest.raises(ConfigError, match=r"tls\.ca_file"):  # a cluster needs its CA
        node_tls(load(environ={}, flags=cluster))
    clustered = node_tls(
        load(environ={}, flags={**cluster, "tls.ca_file": str(tmp_path / "ca.pem")})
    )
    assert clustered is not None and clustered.ca_pem == ca.cert_pem
    _, other_key = certs.write_node(tmp_path, ca, "n2")
    with pytest.raises(ConfigError, match="not the key of"):
        node_tls(load(environ={}, flags={**flags, "tls.key_file": str(other_key)}))
    with pytest.raises(ConfigError, match="cannot be read"):
        node_tls(load(environ={}, flags={**flags, "tls.cert_file": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        node_tls(load(environ={}, flags={**flags, "tls.cert_file": str(key)}))


def test_serve_refuses_with_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "0.0.0.0:0", "--tls-plaintext"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tls-public-plaintext" in err and "Traceback" not in err
    assert main(["serve"]) == 2
    assert "no TLS configured" in capsys.readouterr().err


def test_sdk_tls_settings() -> None:
    pin = "AB:" * 31 + "AB"
    assert normalize_fingerprint(pin) == "ab" * 32
    assert Tls(pinned_sha256=(pin,)).pinned_sha256 == ("ab" * 32,)
    with pytest.raises(ValueError, match="64 hex"):
        Tls(pinned_sha256=("abc",))
    with pytest.raises(ValueError, match="not both"):
        Tls(ca_file="x", ca_pem=b"y")
    with pytest.raises(ValueError, match="replaces the CA"):
        Tls(ca_pem=b"y", pinned_sha256=("ab" * 32,))
    with pytest.raises(ValueError, match="choose one"):
        ClientConfig(plaintext=True, tls=Tls(ca_pem=b"y"))
    assert not ClientConfig().plaintext and ClientConfig().tls.default  # TLS unless asked


def test_a_missing_ca_file_fails_when_the_client_is_made(tmp_path: Path) -> None:
    config = ClientConfig(tls=Tls(ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(FileNotFoundError):
        Client("127.0.0.1:1", Identity.generate(), "nobody", config=config)


@pytest.mark.parametrize(
    ("names", "node", "vouches"),
    [
        (["127.0.0.1", "localhost"], "127.0.0.1:7701", True),
        (["sn1.example.com"], "SN1.example.com:7700", True),
        (["0:0:0:0:0:0:0:1"], "[::1]:7701", True),
        (["10.0.0.1", "sn1"], "10.0.0.2:7700", False),  # another node's name
        ([], "127.0.0.1:7701", False),
    ],
)
def test_a_peer_certificate_vouches_only_for_its_own_hosts(
    names: list[str], node: str, vouches: bool
) -> None:
    assert certificate_names_node(names, node) is vouches
