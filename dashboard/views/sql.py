"""SQL: a console over the store, with saved queries; results as a table and a chart.

Every query (typed or saved) runs in the SQL sandbox (analyzer/sandbox.py) on a connection of its own,
opened read-only and locked down for that query and closed after it: sessions share nothing writable,
and a query gets the sandbox's time, memory and row limits (ROUTERWATCH_SQL_*; the dashboard's
`--sql-timeout` and `--sql-memory-limit` set them). `queries.sandboxed_sql` does it.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from analyzer.sandbox import QueryError, Refused
from collector.store.errors import StoreError
from dashboard import queries as q
from dashboard import ui

st.title("SQL")

EXAMPLES = q.EXAMPLE_QUERIES

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
        try:
            result = q.sandboxed_sql(ui.store_spec(), sql)
        except (QueryError, StoreError) as exc:
            st.session_state.pop("sql_result", None)
            st.error(str(exc), icon=":material/block:" if isinstance(exc, Refused) else None)
        else:
            st.session_state["sql_result"] = result
    res = st.session_state.get("sql_result")
    if res:
        import pandas as pd

        cols, rows = res.columns, res.rows
        frame = pd.DataFrame.from_records(rows, columns=cols)
        st.caption(f"more than {len(rows):,} rows (showing the first {len(rows):,})" if res.truncated
                   else f"{len(rows):,} rows")
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
