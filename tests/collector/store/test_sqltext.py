"""SQL text built from values: whatever the value, DuckDB reads back exactly that value."""

from __future__ import annotations

import duckdb
import pytest

from collector.store.sqltext import sql_escape, sql_literal


@pytest.mark.parametrize("value", ["plain", "it's", "''", "'; DROP TABLE x; --", "back\\slash\\'", "$$x$$",
                                   "/tmp/a b/ü/", "\n'\t"])
def test_literal_round_trips(value):
    con = duckdb.connect()
    assert con.execute(f"SELECT {sql_literal(value)}").fetchone()[0] == value
    assert con.execute(f"SELECT '{sql_escape(value)}'").fetchone()[0] == value
    assert con.execute(f"SELECT json_serialize_sql({sql_literal('SELECT ' + sql_literal(value))})").fetchone()[0]
