"""The demo PKI: files private, names right, and real TLS clients accept it on 127.0.0.1, ::1, localhost."""

from __future__ import annotations

import socket
import ssl
import stat

import pytest
from cryptography import x509

from analyzer.demo.pki import ensure_pki, make_pki
from tests.support.fixtures import pki_dir, zoo  # noqa: F401


def test_files_are_private_and_names_covered(tmp_path):
    p = make_pki(tmp_path / "pki", names=["router.test", "10.0.0.7"])
    for f in (p.ca, p.cert, p.key, p.ca_key):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "router.test"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "10.0.0.7"}
    # Reused when it already covers the names; regenerated when a new name is asked for.
    before = p.cert.read_bytes()
    assert ensure_pki(tmp_path / "pki", ["router.test"]).cert.read_bytes() == before
    assert ensure_pki(tmp_path / "pki", ["other.test"]).cert.read_bytes() != before


@pytest.mark.parametrize("host,server_name", [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("127.0.0.1", "localhost")])
def test_verified_handshake(zoo, host, server_name):  # noqa: F811
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    router = zoo("honest", host=host)
    ctx = ssl.create_default_context(cafile=str(router.ca_path))
    with socket.create_connection((host, router.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            assert tls.version() == "TLSv1.3"
            assert tls.selected_alpn_protocol() is None  # we offered none


def test_tls12_ceiling_and_alpn(zoo):  # noqa: F811
    router = zoo("honest", tls_version="1.2", alpn=("http/1.1",))
    ctx = ssl.create_default_context(cafile=str(router.ca_path))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"
            assert tls.selected_alpn_protocol() == "http/1.1"


def test_parallel_processes_share_one_ca(tmp_path):
    """Routers started at once in separate processes on one certdir end up with a matching CA + leaf."""
    import subprocess
    import sys

    code = "import sys; from analyzer.demo.pki import ensure_pki; ensure_pki(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "pki")]) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0] * 4
    ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.pem"))
    ctx.load_cert_chain(str(tmp_path / "pki" / "cert.pem"), str(tmp_path / "pki" / "key.pem"))
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "cert.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
