"""DuckDB extensions from PyPI wheels, loaded by path: nothing is ever downloaded at run time.

Appliances run air-gapped, so autoinstall/autoload are off and the extension repository points at
a closed loopback port; a missing wheel is a clear error, not a silent network fetch.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
from pathlib import Path

import duckdb

from collector.store.errors import StoreError

# package -> canonical extension name (a file loaded by path must carry the canonical name)
_EXTENSIONS = {
    "duckdb_extension_sqlite": "sqlite_scanner",
    "duckdb_extension_ducklake": "ducklake",
    "duckdb_extension_postgres": "postgres_scanner",
    "duckdb_extension_httpfs": "httpfs",
    "duckdb_extension_aws": "aws",
}
OFFLINE_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    # Anything that still tried to fetch would hit a closed local port and fail fast.
    "custom_extension_repository": "http://127.0.0.1:9/no-downloads",
    # DuckDB checks an extension's signature at LOAD with its own SHA-256 over the whole file: the
    # 35 MB ducklake and sqlite files cost ~0.2 s of wall time and ~0.4 s of CPU in every process
    # that opens a store (most of `routerwatch sql`'s start-up). The check adds nothing here: the
    # only files loaded are our own wheels' (load() below), which are exactly as trusted as the
    # Python code that loads them, and people's SQL cannot LOAD anything: the sandbox admits only
    # SELECT and turns external access off under lock_configuration (analyzer/sandbox.py).
    "allow_unsigned_extensions": True,
}
_link_dir: Path | None = None


def _wheel_file(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    version = duckdb.__version__
    files = list(Path(spec.origin).parent.glob(f"extensions/v{version}/*.duckdb_extension"))
    return files[0] if files else None


def extension_path(name: str) -> Path:
    """Path of the extension `name`, under its canonical file name (a per-process link)."""
    global _link_dir
    package = next((p for p, n in _EXTENSIONS.items() if n == name), None)
    src = _wheel_file(package) if package else None
    if src is None:
        raise StoreError(
            f"DuckDB extension {name!r} is not installed; install the PyPI package "
            f"{(package or name).replace('_', '-')}=={duckdb.__version__} (it must match duckdb's version)"
        )
    if src.name == f"{name}.duckdb_extension":
        return src
    if _link_dir is None:
        _link_dir = Path(tempfile.mkdtemp(prefix="routerwatch-ext-"))
        atexit.register(shutil.rmtree, _link_dir, True)
    link = _link_dir / f"{name}.duckdb_extension"
    if not link.exists():
        link.symlink_to(src)
    return link


def load(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """LOAD each extension by path."""
    for name in names:
        con.execute(f"LOAD '{extension_path(name)}'")
