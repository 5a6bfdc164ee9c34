"""The proxy CA: created once with a private key file, reloaded as it is, leaves that real TLS clients
verify for DNS names and IP addresses, a bounded context cache; and the minting functions themselves."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.proxy.ca import CertificateAuthority, mint_ca, mint_leaf, write_private


def test_created_private_then_reloaded(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem"]  # no .tmp left
    ca.key_path.chmod(0o644)
    again = CertificateAuthority(tmp_path / "ca")
    assert again.cert == ca.cert and stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "routerwatch"


def _serve_once(ctx: ssl.SSLContext) -> tuple[int, threading.Thread]:
    srv = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with srv:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv.getsockname()[1], t


@pytest.mark.parametrize("server_name", ["router.example", "127.0.0.1"])
def test_leaf_verified_by_a_real_client(tmp_path: Path, server_name: str) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    port, t = _serve_once(ca.server_context(server_name))
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname=server_name) as tls:
            assert tls.recv(2) == b"ok"
    t.join(10)


def test_leaf_for_another_name_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    port, t = _serve_once(ca.server_context("router.example"))
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.wrap_socket(raw, server_hostname="other.example")
    t.join(10)


def test_context_cache_is_bounded_lru(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca", cache_size=2)
    a = ca.server_context("a.example")
    assert ca.server_context("A.EXAMPLE") is a  # host names are case-insensitive
    ca.server_context("b.example")
    assert ca.server_context("a.example") is a  # a is now the most recent
    ca.server_context("c.example")  # evicts b
    assert list(ca._contexts) == [("a.example", ("http/1.1",)), ("c.example", ("http/1.1",))]
    assert ca.server_context("a.example", alpn=("h2",)) is not a


def test_minted_leaf_fields() -> None:
    ca_key, ca_cert = mint_ca("x" * 80, "org")
    key, cert = mint_leaf(ca_key, ca_cert, ("h" * 70 + ".example", "10.0.0.7", "::1"), valid=dt.timedelta(days=30))
    cert.verify_directly_issued_by(ca_cert)
    assert len(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) == 64
    assert len(ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) == 64
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["h" * 70 + ".example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == dt.timedelta(days=30, hours=1)
    assert key.public_key() == cert.public_key()


def test_write_private_replaces_a_wider_file(tmp_path: Path) -> None:
    target = tmp_path / "secret.pem"
    (tmp_path / "secret.pem.tmp").write_bytes(b"stale")
    (tmp_path / "secret.pem.tmp").chmod(0o644)
    write_private(target, b"key")
    assert target.read_bytes() == b"key" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / "secret.pem.tmp").exists()
