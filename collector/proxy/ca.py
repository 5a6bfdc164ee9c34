"""The proxy's certificate authority: one per host, generated once, private key 0600.

Leaf certificates are minted per target host in memory (ECDSA P-256: about a millisecond each)
and handed to OpenSSL through a memfd, so no leaf private key ever touches the disk.
`mint_ca`/`mint_leaf` are the project's one way to make certificates: the demo router zoo
(analyzer/demo/pki.py) and the tests mint theirs here too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.config import routerwatch_dir, xdg_dir

CA_DIR_ENV = "ROUTERWATCH_PROXY_CA_DIR"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"


def default_ca_dir() -> Path:
    """$ROUTERWATCH_PROXY_CA_DIR, else /etc/routerwatch/proxy-ca as root, else ~/.config/routerwatch/proxy-ca."""
    return routerwatch_dir(CA_DIR_ENV, "/etc/routerwatch/proxy-ca",
                           lambda: xdg_dir("XDG_CONFIG_HOME", ".config") / "proxy-ca")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted: callers keep it in memory or write it 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Create (or replace) a file readable by its owner only, without a window where it is wider."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)  # an existing .tmp keeps its mode through O_TRUNC
    os.replace(tmp, path)


def mint_ca(common_name: str, organization: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA (EC P-256, ten years, may sign leaves only: path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def mint_leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: tuple[str, ...],
              valid: dt.timedelta, backdate: dt.timedelta = dt.timedelta(hours=1),
              ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate (EC P-256) for `names`, IP addresses and DNS names; the first is its CN."""
    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + valid)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


class CertificateAuthority:
    """Load the CA from `directory`, creating it on first use; mint leaf server contexts."""

    def __init__(self, directory: Path | None = None, cache_size: int = 512):
        self.directory = Path(directory) if directory else default_ca_dir()
        self.cert_path = self.directory / CA_CERT
        self.key_path = self.directory / CA_KEY
        self._lock = threading.Lock()
        self._contexts: OrderedDict[tuple[str, tuple[str, ...]], ssl.SSLContext] = OrderedDict()
        self._cache_size = cache_size
        self.cert, self.key = self._load_or_create()
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def _load_or_create(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        if self.key_path.exists() and self.cert_path.exists():
            if self.key_path.stat().st_mode & 0o077:
                os.chmod(self.key_path, 0o600)
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_path}: expected an EC private key")
            return cert, key
        key, cert = mint_ca(f"routerwatch proxy CA ({os.uname().nodename})", "routerwatch")
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(self.key_path, key_pem(key))  # the key appears last: a half-made CA is never loaded
        return cert, key

    def leaf_pem(self, host: str) -> bytes:
        """PEM of a fresh leaf certificate + key for `host` (a DNS name or an IP address)."""
        key, cert = mint_leaf(self.key, self.cert, (host,), valid=dt.timedelta(days=30))
        return cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem + key_pem(key)

    def server_context(self, host: str, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        """A server-side SSLContext presenting a leaf for `host` and offering `alpn` (cached, LRU)."""
        host = host.lower()
        key = (host, tuple(alpn))
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is not None:
                self._contexts.move_to_end(key)
                return ctx
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(list(alpn))
        fd = os.memfd_create("routerwatch-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, self.leaf_pem(host))
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        with self._lock:
            self._contexts[key] = ctx
            while len(self._contexts) > self._cache_size:
                self._contexts.popitem(last=False)
        return ctx
