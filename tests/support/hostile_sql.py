"""Hostile SQL for the sandbox suites (`routerwatch sql` and the dashboard's SQL page): the statements,
a store with planted bait, and the before/after snapshot that proves nothing was written or leaked.

Every statement here was either observed to write, read or break something on the unsandboxed code
(issue 13) or is a variant of one (comments, whitespace, case, smuggling after a harmless statement).
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

MARKER = "PLANTED-7f3c9a-not-for-sql"  # in files outside the store's tables: never in any output

HOSTILE = [
    # writes files anywhere
    "COPY (SELECT 1) TO '{out}/copied.csv'",
    "COPY flows TO '{data}/main/flows/evil.parquet' (FORMAT parquet)",
    "ATTACH '{out}/new.db'",
    "ATTACH '{out}/new2.db' AS n; CREATE TABLE n.t AS SELECT 1",
    "EXPORT DATABASE '{out}/exported'",
    "COPY FROM DATABASE lake TO memory",
    # reads the fingerprint key and system files
    "SELECT * FROM read_blob('{root}/secret.key')",
    "SELECT content FROM read_text('{root}/secret.key')",
    "SELECT * FROM read_text('/etc/shadow')",
    "SELECT * FROM read_text('{out}/planted.csv')",
    "SELECT * FROM read_csv('{out}/planted.csv')",
    "SELECT * FROM read_csv_auto('{root}/secret.key')",
    "FROM '{out}/planted.csv'",
    "SELECT * FROM \"{out}/planted.csv\"",
    "DESCRIBE '{out}/planted.csv'",
    "SUMMARIZE SELECT * FROM read_text('/etc/shadow')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{data}/**/*.parquet')",
    "SELECT * FROM parquet_metadata('{data}/main/flows/*.parquet')",
    "SELECT * FROM sqlite_scan('{root}/catalog.sqlite', 'ducklake_metadata')",
    "SELECT * FROM sqlite_attach('{root}/catalog.sqlite')",
    "SELECT * FROM query('SELECT * FROM read_text(''/etc/shadow'')')",
    "SELECT * FROM query_table('{out}/planted.csv')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "IMPORT DATABASE '{out}/imp'",
    "SELECT getenv('HOME')",
    # the catalog, rewritten through another attachment
    "USE memory; DETACH lake; ATTACH 'ducklake:sqlite:{root}/catalog.sqlite' AS rw (DATA_PATH '{data}/'); "
    "DELETE FROM rw.flows",
    "ATTACH 'ducklake:sqlite:{root}/catalog.sqlite' AS rw2 (DATA_PATH '{data}/'); DELETE FROM rw2.flows",
    "ATTACH '{root}/catalog.sqlite' AS cat (TYPE sqlite); UPDATE cat.ducklake_snapshot SET schema_version = 99",
    "USE memory",
    "DETACH lake",
    # writes through the store itself
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "SELECT * FROM checkpoint('lake')",
    "CALL ducklake_merge_adjacent_files('lake')",
    "SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())",
    "SELECT * FROM ducklake_flush_inlined_data('lake')",
    "SELECT * FROM lake.merge_adjacent_files()",
    "CALL lake.set_option('data_inlining_row_limit', 0)",
    "DELETE FROM flows",
    "UPDATE flows SET dst_port = 6666",
    "INSERT INTO flows (flow_uid) VALUES ('forged')",
    "DROP TABLE flows",
    "CREATE TABLE memory.x AS SELECT 42",
    "CREATE TEMP TABLE x AS SELECT 42",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "PIVOT flows ON proto USING count(*)",
    "VACUUM",
    "BEGIN",
    # EXPLAIN ANALYZE executes its statement
    "EXPLAIN ANALYZE CREATE TABLE memory.x AS SELECT 42",
    "EXPLAIN ANALYZE COPY (SELECT * REPLACE (6666 AS dst_port) FROM lake.flows) TO '{flow_file}' (FORMAT parquet)",
    "explain   analyse COPY (SELECT 1) TO '{out}/analysed.csv'",
    "EXPLAIN (ANALYZE) SELECT 1",
    "EXPLAIN /* hidden */ ANALYZE COPY (SELECT 1) TO '{out}/hidden.csv'",
    # settings, extensions
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET memory_limit",
    "SET memory_limit = '100GB'",
    "PRAGMA enable_profiling",
    "PRAGMA threads = 64",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET VARIABLE v = 1",
    # smuggling after a harmless statement, comments and whitespace
    "SELECT 1; COPY (SELECT 1) TO '{out}/smuggled.csv'",
    "SELECT 1 /* ; */ ; COPY (SELECT 1) TO '{out}/smuggled2.csv'",
    "SELECT ';'; COPY (SELECT 1) TO '{out}/smuggled3.csv'",
    "/* leading */ COPY (SELECT 1) TO '{out}/commented.csv' -- trailing",
    "\n\t  copy\n(select 1)\n\tTO\n'{out}/whitespace.csv'\n",
    "-- a comment line\nATTACH '{out}/after-comment.db'",
    "SELECT 1) TO '{out}/x.csv'; COPY (SELECT 1",
]


@dataclass
class HostileStore:
    """A seeded store plus bait outside it; `fmt()` fills a statement's placeholders."""

    base: Path  # everything the tests watch lives under here
    root: Path  # the store directory
    out: Path  # a directory a hostile statement would write into
    key: bytes

    @property
    def data(self) -> Path:
        return self.root / "data"

    def flow_file(self) -> Path:
        return next((self.data / "main" / "flows").glob("*.parquet"))

    def fmt(self, stmt: str) -> str:
        return stmt.format(root=self.root, data=self.data, out=self.out, flow_file=self.flow_file())

    def env(self) -> dict[str, str]:
        """HOME, TMPDIR and the working directory inside `base`, so any file a run creates is seen."""
        return {"HOME": str(self.base / "home"), "TMPDIR": str(self.base / "tmp"), "ROUTERWATCH_STORE": str(self.root)}


def build(base: Path) -> HostileStore:
    from collector.store import Store
    from tests.support.sample_data import seed

    root = base / "store"
    with Store.open(str(root)) as s:
        seed(s, flows=600, exchanges=60, hosts=2)
        key = s.secret_key()
    for d in ("home", "tmp", "cwd"):
        (base / d).mkdir()
    out = base / "out"
    out.mkdir()
    (out / "planted.csv").write_text(f"a,b\n{MARKER},1\n")
    (out / "imp").mkdir()
    (out / "imp" / "schema.sql").write_text(f"CREATE TABLE imported AS SELECT '{MARKER}' AS m;\n")
    (out / "imp" / "load.sql").write_text("")
    return HostileStore(base, root, out, key)


def catalog_dump(catalog: Path) -> str:
    """A digest of every table of the SQLite catalog (read through a read-only URI)."""
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


JOURNALS = ("-journal", "-wal", "-shm")


def snapshot(hs: HostileStore) -> dict[str, str]:
    """Every file under `base` with its digest (the catalog as a dump of its tables; the journals of the
    catalog and of the dashboard's annotations database left out)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(hs.base):
        for name in dirnames:
            out[os.path.join(dirpath, name) + "/"] = "dir"
        for name in filenames:
            p = Path(dirpath) / name
            if name.endswith(JOURNALS) and (p.parent == hs.root and name.startswith("catalog.sqlite") or
                                            p.parent == hs.base / "state" and name.startswith("annotations.sqlite")):
                continue  # SQLite journals of the store's catalog and of the dashboard's own state
            if p == hs.root / "catalog.sqlite":
                out[str(p)] = "catalog:" + catalog_dump(p)
                continue
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changed = [f"created {p}" for p in after.keys() - before.keys()]
    changed += [f"deleted {p}" for p in before.keys() - after.keys()]
    changed += [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(changed)


def secrets_in(text: str, hs: HostileStore) -> list[str]:
    """Bait found in `text`: the key (raw, hex, base64, Python repr), planted files, /etc/shadow."""
    found = []
    forms = {"key hex": hs.key.hex(), "key base64": base64.b64encode(hs.key).decode(), "key repr": repr(hs.key)[2:-1]}
    found += [name for name, form in forms.items() if form and form in text]
    if MARKER in text:
        found.append("planted file")
    try:
        shadow = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        shadow = []
    if shadow and shadow[0] and shadow[0] in text:
        found.append("/etc/shadow")
    return found
