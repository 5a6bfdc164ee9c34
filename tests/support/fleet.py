"""The fleet's central services for tests, real and on loopback: Debian's PostgreSQL (a throw-away
cluster in a temporary directory on a free port) and an S3-compatible object store (moto's server).

Why moto: it is pure Python from PyPI (installed by `deploy/deps.sh --test`), speaks the S3 API with
path-style URLs on any endpoint, starts in about a second, and is one process the tests can pause
with SIGSTOP to make the object store unavailable. It keeps objects in memory, so it is paused and
resumed, never restarted, within a test. MinIO and Ceph RGW have no PyPI or Debian package here;
docs/store-and-fleet.md gives their settings.

Both servers run as the test's children, bound to 127.0.0.1 only, and are stopped by PID.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "routerwatch"
PG_DB = "routerwatch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def postgres_skip_reason() -> str | None:
    if pg_bindir() is None:
        return "PostgreSQL server is not installed (deploy/deps.sh --test installs Debian's postgresql)"
    return None


class PostgresServer:
    """A real PostgreSQL cluster on 127.0.0.1:port. TCP connections need a password (scram-sha-256),
    so every test that connects goes through a credential path a user would use (.pgpass here)."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError(postgres_skip_reason())
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="rw-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.run_as = "postgres" if os.geteuid() == 0 else None  # the server refuses to run as root
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pw"
        pwfile.write_text("bootstrap\n")
        if self.run_as:
            os.chown(pwfile, pwd.getpwnam(self.run_as).pw_uid, -1)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
        self.start()
        self.psql(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {PG_DB} OWNER {PG_USER}")
        # a client-side password file, as a user would keep one (0600, the libpq format)
        self.pgpass = Path(tempfile.mkdtemp(prefix="rw-pgpass-")) / "pgpass"
        self.pgpass.write_text(f"127.0.0.1:{self.port}:{PG_DB}:{PG_USER}:{self.password}\n")
        self.pgpass.chmod(0o600)

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{tool} failed: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        """Stop (fast: open connections are cut) and start again: what a PostgreSQL restart does to clients."""
        self.stop()
        self.start()

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._pg("psql", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", db,
                        "-At", "-v", "ON_ERROR_STOP=1", "-c", sql).stdout

    def spec(self) -> str:
        """The store spec: a DuckLake catalog on this server; no password in it (.pgpass holds it)."""
        return f"ducklake:postgres:dbname={PG_DB} host=127.0.0.1 port={self.port} user={PG_USER}"

    def env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.pgpass)}

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.pgpass.parent, ignore_errors=True)


class S3Server:
    """moto's S3 server on 127.0.0.1:port with one bucket; `pause()`/`resume()` make it unavailable."""

    REGION = "us-east-1"

    def __init__(self, bucket: str = "routerwatch") -> None:
        self.port = free_port()
        self.bucket = bucket
        self.key_id = "AKIA" + secrets.token_hex(8).upper()
        self.secret = secrets.token_urlsafe(30)
        self.dir = Path(tempfile.mkdtemp(prefix="rw-s3-"))
        self.log = open(self.dir / "moto.log", "w")
        server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if server is None:
            raise RuntimeError("moto_server is not installed (pip install -e '.[test]')")
        self.proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, 60, self.proc)
        self.client().create_bucket(Bucket=bucket)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret, region_name=self.REGION)

    def keys(self, prefix: str = "") -> list[str]:
        out, token = [], None
        c = self.client()
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = c.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def env(self) -> dict[str, str]:
        """What a collector on a fleet host would set: the data path, the endpoint, AWS credentials."""
        return {
            "ROUTERWATCH_DATA_PATH": f"s3://{self.bucket}/lake/",
            "ROUTERWATCH_S3_ENDPOINT": self.endpoint,
            "ROUTERWATCH_S3_URL_STYLE": "path",
            "ROUTERWATCH_S3_USE_SSL": "false",
            "AWS_REGION": self.REGION,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
        }

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


needs_postgres = pytest.mark.skipif(postgres_skip_reason() is not None, reason=postgres_skip_reason() or "")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    srv = PostgresServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    srv = S3Server()
    yield srv
    srv.close()
