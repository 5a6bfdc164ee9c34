"""SQL: a read-only console over the store, with saved queries; results as a table and a chart."""

from __future__ import annotations

import duckdb
import plotly.express as px
import streamlit as st

from analyzer.sql import QueryError, run_query
from dashboard import queries as q
from dashboard import ui

st.title("SQL")

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
EXAMPLES = q.EXAMPLE_QUERIES
MAX_ROWS = 10_000


class _ReadOnly:
    """What `run_query` needs of a Store: a connection (here a per-query cursor) and read_only."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.read_only = True


def refuse_writes(sql: str) -> str | None:
    """Why `sql` is refused, or None. Only SELECT-like statements run (the store is read-only anyway,
    but the reader's private in-memory database is not, and COPY/ATTACH would reach the filesystem)."""
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        return f"cannot parse: {str(exc).splitlines()[0]}"
    bad = [s.type.name for s in stmts if s.type not in ALLOWED]
    if bad:
        return (f"the dashboard's SQL console is read-only: {', '.join(sorted(set(bad)))} statements are refused. "
                "Only SELECT / WITH / EXPLAIN / DESCRIBE / SHOW / SUMMARIZE run here.")
    return None


notes = ui.annotations()
saved = {**EXAMPLES, **notes.saved_queries()}
left, right = st.columns([1, 3])
with left:
    st.markdown("**Saved queries**")
    for name in saved:
        if st.button(name, key=f"saved_{name}", width="stretch"):
            st.session_state["sql_text"] = saved[name]
    st.markdown("**Tables**")
    st.caption(", ".join(ui.cached(q.table_list)))
with right:
    sql = st.text_area("Query", key="sql_text", height=160, placeholder="SELECT * FROM flows LIMIT 20")
    b1, b2, b3 = st.columns([1, 2, 1])
    run = b1.button("Run", type="primary", icon=":material/play_arrow:")
    name = b2.text_input("Save as", key="sql_name", label_visibility="collapsed", placeholder="name to save as")
    if b3.button("Save") and name and sql.strip():
        notes.save_query(name.strip(), sql)
        st.toast(f"saved {name!r}")
    if run and sql.strip():
        why = refuse_writes(sql)
        if why:
            st.session_state.pop("sql_result", None)
            st.error(why, icon=":material/block:")
        else:
            cur = ui.reader().cursor()
            try:
                cols, rows = run_query(_ReadOnly(cur), sql)
            except QueryError as exc:
                st.session_state.pop("sql_result", None)
                st.error(str(exc))
            else:
                st.session_state["sql_result"] = (cols, rows[:MAX_ROWS], len(rows))
            finally:
                cur.close()
    res = st.session_state.get("sql_result")
    if res:
        import pandas as pd

        cols, rows, n = res
        frame = pd.DataFrame.from_records(rows, columns=cols)
        st.caption(f"{n:,} rows" + (f" (showing {MAX_ROWS:,})" if n > MAX_ROWS else ""))
        tab_t, tab_c = st.tabs(["Table", "Chart"])
        with tab_t:
            st.dataframe(frame, hide_index=True, key="sql_table")
        with tab_c:
            if len(cols) >= 2 and not frame.empty:
                c1, c2, c3 = st.columns(3)
                x = c1.selectbox("x", cols, index=0, key="sql_x")
                numeric = [c for c in cols if pd.api.types.is_numeric_dtype(frame[c])] or cols[1:]
                y = c2.selectbox("y", numeric, index=len(numeric) - 1, key="sql_y")
                kind = c3.selectbox("chart", ["bar", "line", "scatter"], key="sql_kind")
                fig = {"bar": px.bar, "line": px.line, "scatter": px.scatter}[kind](frame, x=x, y=y, height=320)
                st.plotly_chart(fig, key="sql_chart")
            else:
                st.caption("A chart needs at least two columns.")
