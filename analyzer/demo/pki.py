"""A throw-away CA and server certificates for the loopback router zoo.

Real clients (the openai/anthropic SDKs, curl, Node) verify certificates, so the demo routers present
a leaf signed by a CA that the clients are told to trust (SSL_CERT_FILE, --cacert, NODE_EXTRA_CA_CERTS).
Nothing here is meant for production: keys are EC P-256, files are written 0600.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class PkiPaths:
    """Where the PEM files are: the CA to trust, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path
    ca_key: Path


def _write_private(path: Path, data: bytes) -> None:
    """Create (or replace) a file readable by its owner only, without a window where it is wider."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "routerwatch demo")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: tuple[str, ...]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `names` (IP addresses and DNS names), valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: str | os.PathLike, names: tuple[str, ...] | list[str] = (),
             common_name: str = "routerwatch demo CA") -> PkiPaths:
    """Write a fresh CA and a leaf for 127.0.0.1, ::1, localhost and `names` into `directory`.

    Returns the paths of ca.pem, cert.pem, key.pem (and ca-key.pem), all 0600, the directory 0700.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    all_names = tuple(dict.fromkeys([*DEFAULT_NAMES, *names]))
    ca_key, ca_cert = _new_ca(common_name)
    key, cert = issue_leaf(ca_key, ca_cert, all_names)
    paths = PkiPaths(ca=d / "ca.pem", cert=d / "cert.pem", key=d / "key.pem", ca_key=d / "ca-key.pem")
    _write_private(paths.ca_key, _key_pem(ca_key))
    _write_private(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(paths.key, _key_pem(key))
    _write_private(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(d / "names.json", json.dumps(list(all_names)).encode())
    return paths


def ensure_pki(directory: str | os.PathLike, names: tuple[str, ...] | list[str] = ()) -> PkiPaths:
    """Reuse the CA and leaf in `directory` when they exist and cover `names`; otherwise make new ones.

    Serialised with a lock file, so routers started in parallel processes never pair a leaf with
    another process's CA."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    fd = os.open(d / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _ensure_locked(d, names)
    finally:
        os.close(fd)


def _ensure_locked(d: Path, names: tuple[str, ...] | list[str]) -> PkiPaths:
    paths = PkiPaths(ca=d / "ca.pem", cert=d / "cert.pem", key=d / "key.pem", ca_key=d / "ca-key.pem")
    wanted = set(DEFAULT_NAMES) | set(names)
    try:
        have = set(json.loads((d / "names.json").read_text()))
        if wanted <= have and all(p.is_file() for p in (paths.ca, paths.cert, paths.key)):
            cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
            if cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
                return paths
    except (OSError, ValueError):
        pass
    return make_pki(d, tuple(sorted(wanted - set(DEFAULT_NAMES))))
