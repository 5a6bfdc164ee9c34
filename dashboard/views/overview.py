"""Overview: hosts, activity over time, top destinations by class, collector health."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import queries as q
from dashboard import ui

st.title("Overview")


def body() -> None:
    w = ui.window()
    health = ui.cached(q.collector_health, w)
    totals = health["totals"]
    lost = int(totals["lost"].fillna(0).sum()) if not totals.empty else 0
    drops = int(totals["capture_drops"].fillna(0).sum()) if not totals.empty else 0
    if lost or drops:
        st.warning(f"Data was lost in this window: **{lost:,} lost events** and **{drops:,} capture drops** "
                   "(see Collector health below). Counts and findings may be incomplete.", icon=":material/warning:")
    k = ui.cached(q.overview_kpis, w)
    hosts = ui.cached(q.overview_hosts, w)
    c = st.columns(5)
    c[0].metric("Hosts", f"{len(hosts):,}")
    c[1].metric("Flows", f"{k['flows']:,}")
    c[2].metric("LLM exchanges", f"{k['exchanges']:,}")
    c[3].metric("Findings", f"{k['findings']:,}")
    c[4].metric("High / critical", f"{k['serious']:,}")

    left, right = st.columns([3, 2])
    with left:
        ts = ui.cached(q.overview_timeseries, w)
        st.subheader("Activity over time")
        if ts.empty:
            st.info("No flows, exchanges or findings in this window.")
        else:
            order = {"series": ["flows", "exchanges", "findings"]}
            fig = px.bar(ts, x="bucket", y="n", color="series", facet_row="series", height=330,
                         labels={"bucket": "", "n": ""}, category_orders=order,
                         color_discrete_sequence=["#1565c0", "#6a1b9a", "#c62828"])
            width_ms = pd.Timedelta(w.bucket()).total_seconds() * 1000 * 0.9
            fig.update_traces(width=width_ms)  # one bar per bucket even where a series has few points
            fig.update_yaxes(matches=None)
            lo = w.start if w.start is not None else ts["bucket"].min()
            hi = w.end if w.end is not None else ts["bucket"].max() + pd.Timedelta(w.bucket())
            fig.update_xaxes(range=[lo, hi])
            fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
            fig.update_layout(showlegend=False, margin=dict(l=0, r=0, t=10, b=0))
            st.plotly_chart(fig, key="ov_ts")
    with right:
        st.subheader("Top destinations")
        top = ui.cached(q.top_destinations, w)
        if top.empty:
            st.info("No flows in this window.")
        else:
            fig = px.bar(top.iloc[::-1], x="flows", y="destination", color="class", orientation="h", height=330,
                         color_discrete_map=ui.CLASS_COLORS, labels={"destination": ""})
            fig.update_yaxes(categoryorder="total ascending")
            fig.update_layout(margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h", y=-0.15))
            st.plotly_chart(fig, key="ov_top")

    st.subheader("Hosts")
    st.dataframe(hosts, hide_index=True, column_config={
        "bytes_out": st.column_config.NumberColumn("bytes out", format="compact"),
        "last_flow": st.column_config.DatetimeColumn("last flow"),
        "last_report": st.column_config.DatetimeColumn("last collector report"),
    })

    st.subheader("Collector health")
    if totals.empty:
        st.info("No collector_stats in this window (offline ingest only, or the collector is not running).")
    else:
        st.dataframe(totals, hide_index=True, column_config={
            "rss_bytes": st.column_config.NumberColumn("RSS", format="compact"),
        })
        if not health["losses"].empty:
            st.caption("Intervals that lost events or packets")
            st.dataframe(health["losses"], hide_index=True)
        else:
            st.success("Nothing lost in this window: every event and packet was recorded.")


ui.live(body)
