"""A fleet store's remote parts: the PostgreSQL catalog's connection string and an object-storage data path.

Credentials come only from the standard places and stay there:
- PostgreSQL: libpq's own sources, read by the postgres extension's built-in libpq: `PGPASSWORD`,
  `PGPASSFILE` / `~/.pgpass`, `PGSERVICE` / `PGSERVICEFILE` (`service=NAME` in the spec), client
  certificates (`sslcert=`). A `password=` written into the spec works but is refused in logs and
  messages (`display_spec` masks it) and warned about: it would show in process listings.
- S3: a DuckDB secret with the `credential_chain` provider (the AWS SDK's chain, from the
  duckdb-extension-aws wheel): environment (`AWS_ACCESS_KEY_ID`...), the shared credentials/config
  files (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_PROFILE`), the instance role (add `sts` with an assumed role). The
  secret lives in the process's memory only (DuckDB prints it redacted) and refreshes itself.

Endpoint, region and URL style make any S3-compatible server work (MinIO, Ceph RGW, moto):
`ROUTERWATCH_S3_ENDPOINT` (host:port), `ROUTERWATCH_S3_REGION`, `ROUTERWATCH_S3_URL_STYLE`
(path|vhost), `ROUTERWATCH_S3_USE_SSL` (true|false). docs/store-and-fleet.md lists the settings of each.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import duckdb

from collector.store.errors import StoreError
from collector.store.sqltext import sql_literal

ENDPOINT_ENV = "ROUTERWATCH_S3_ENDPOINT"
REGION_ENV = "ROUTERWATCH_S3_REGION"
URL_STYLE_ENV = "ROUTERWATCH_S3_URL_STYLE"
USE_SSL_ENV = "ROUTERWATCH_S3_USE_SSL"
CHAIN_ENV = "ROUTERWATCH_S3_CREDENTIAL_CHAIN"
HTTP_TIMEOUT_ENV = "ROUTERWATCH_S3_TIMEOUT_S"
DEFAULT_CHAIN = "env;config;instance"
OBJECT_SCHEMES = ("s3://", "s3a://", "s3n://", "r2://", "gcs://", "gs://")
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)(@)", re.IGNORECASE)


def display_spec(spec: str) -> str:
    """The store spec as it may be printed or logged: any password masked."""
    return _URI_PASSWORD.sub(r"\1***\3", _PASSWORD.sub(r"\1***", spec))


def has_password(spec: str) -> bool:
    return display_spec(spec) != spec


def is_object_path(data_path: str) -> bool:
    return data_path.lower().startswith(OBJECT_SCHEMES)


def _bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise StoreError(f"{name}={v!r}: use true or false")




@dataclass(frozen=True)
class S3Settings:
    endpoint: str | None
    region: str | None
    url_style: str
    use_ssl: bool
    chain: str
    timeout_s: int

    @classmethod
    def from_env(cls) -> S3Settings:
        endpoint = os.environ.get(ENDPOINT_ENV) or None
        use_ssl = _bool(USE_SSL_ENV, True)
        if endpoint:  # accept a URL too: the scheme says whether TLS is on
            m = re.match(r"^(https?)://(.*?)/*$", endpoint, re.IGNORECASE)
            if m:
                use_ssl = m.group(1).lower() == "https" if os.environ.get(USE_SSL_ENV) is None else use_ssl
                endpoint = m.group(2)
            if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", endpoint):
                raise StoreError(f"{ENDPOINT_ENV}={endpoint!r} is not host[:port]")
        style = (os.environ.get(URL_STYLE_ENV) or ("path" if endpoint else "vhost")).lower()
        if style not in ("path", "vhost"):
            raise StoreError(f"{URL_STYLE_ENV}={style!r}: use path or vhost")
        region = os.environ.get(REGION_ENV) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        chain = os.environ.get(CHAIN_ENV) or DEFAULT_CHAIN
        if not re.fullmatch(r"[a-z]+(;[a-z]+)*", chain):
            raise StoreError(f"{CHAIN_ENV}={chain!r}: a ';'-separated list such as {DEFAULT_CHAIN}")
        try:
            timeout = int(os.environ.get(HTTP_TIMEOUT_ENV) or 10)
        except ValueError:
            raise StoreError(f"{HTTP_TIMEOUT_ENV} must be a whole number of seconds") from None
        return cls(endpoint, region, style, use_ssl, chain, max(1, timeout))

    def secret_sql(self, name: str = "routerwatch_s3") -> str:
        opts = ["TYPE s3", "PROVIDER credential_chain", f"CHAIN {sql_literal(self.chain)}", "REFRESH 'auto'",
                f"URL_STYLE {sql_literal(self.url_style)}", f"USE_SSL {'true' if self.use_ssl else 'false'}"]
        if self.region:
            opts.append(f"REGION {sql_literal(self.region)}")
        if self.endpoint:
            opts.append(f"ENDPOINT {sql_literal(self.endpoint)}")
        return f"CREATE OR REPLACE SECRET {name} ({', '.join(opts)})"


def configure(con: duckdb.DuckDBPyConnection, data_path: str) -> None:
    """Make `data_path` reachable from `con`: for object storage, the S3 secret and short HTTP timeouts
    (a store that stops answering must fail a commit in seconds, so the collector buffers instead of
    stalling). Extensions are loaded by the caller."""
    if not is_object_path(data_path):
        return
    s3 = S3Settings.from_env()
    con.execute(f"SET http_timeout = {s3.timeout_s}")
    con.execute("SET http_retries = 1")
    con.execute("SET http_retry_wait_ms = 200")
    try:
        con.execute(s3.secret_sql())
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"no S3 credentials for {data_path} ({first}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_SHARED_CREDENTIALS_FILE (+ AWS_PROFILE), or run where an instance role applies"
        ) from None


def extensions_for(catalog: str, data_path: str) -> list[str]:
    """DuckDB extensions a store needs, in load order."""
    names = ["ducklake", "postgres_scanner" if ":postgres:" in catalog else "sqlite_scanner"]
    if is_object_path(data_path):
        names += ["httpfs", "aws"]
    return names
