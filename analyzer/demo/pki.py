"""A throw-away CA and server certificates for the loopback router zoo.

Real clients (the openai/anthropic SDKs, curl, Node) verify certificates, so the demo routers present
a leaf signed by a CA that the clients are told to trust (SSL_CERT_FILE, --cacert, NODE_EXTRA_CA_CERTS).
Nothing here is meant for production: keys are EC P-256, files are written 0600. The certificates
are minted by the proxy's CA module (collector/proxy/ca.py), the project's one way to make them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.proxy.ca import key_pem, mint_ca, mint_leaf, write_private

DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class PkiPaths:
    """Where the PEM files are: the CA to trust, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path
    ca_key: Path


def make_pki(directory: str | os.PathLike, names: tuple[str, ...] | list[str] = (),
             common_name: str = "routerwatch demo CA") -> PkiPaths:
    """Write a fresh CA and a leaf for 127.0.0.1, ::1, localhost and `names` into `directory`.

    Returns the paths of ca.pem, cert.pem, key.pem (and ca-key.pem), all 0600, the directory 0700.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    all_names = tuple(dict.fromkeys([*DEFAULT_NAMES, *names]))
    ca_key, ca_cert = mint_ca(common_name, "routerwatch demo")
    key, cert = mint_leaf(ca_key, ca_cert, all_names, valid=dt.timedelta(days=365), backdate=dt.timedelta(days=1))
    paths = PkiPaths(ca=d / "ca.pem", cert=d / "cert.pem", key=d / "key.pem", ca_key=d / "ca-key.pem")
    write_private(paths.ca_key, key_pem(ca_key))
    write_private(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths.key, key_pem(key))
    write_private(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    write_private(d / "names.json", json.dumps(list(all_names)).encode())
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
