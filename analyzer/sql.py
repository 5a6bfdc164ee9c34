"""`routerwatch sql` output: query results formatted as a table, JSON or CSV.

The queries themselves run in the SQL sandbox (analyzer/sandbox.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import uuid
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "json", "csv")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID | dt.timedelta):
        return str(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _text(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, list | tuple | dict):
        return json.dumps(_jsonable(v), ensure_ascii=False)
    return str(v)


def format_rows(columns: Sequence[str], rows: Sequence[tuple], fmt: str = "table", max_width: int = 60) -> str:
    """Render a result; `json` is one array of objects (column name -> value)."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, map(_jsonable, r), strict=True)) for r in rows], ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if v is None else _text(v) for v in r])
        return buf.getvalue().rstrip("\n")
    if not columns:
        return "OK"
    cells = [[_text(v).replace("\n", "\\n") for v in r] for r in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r] for r in cells]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
