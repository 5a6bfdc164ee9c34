"""Hosts: every host of the fleet, whether its collector reports, what it runs and what it lost."""

from __future__ import annotations

import streamlit as st

from dashboard import queries as q
from dashboard import ui

st.title("Hosts")


def _only(host: str) -> None:
    st.session_state["rw_hosts"] = [host]  # a callback: runs before the sidebar's widget is built


def body() -> None:
    w = ui.window()
    hosts = ui.cached(q.hosts_report, w)
    if hosts.empty:
        st.info("No collector has reported yet (collector_stats is empty for these hosts): start "
                "`routerwatch collect` on a host, pointed at this store.")
        return
    silent = hosts[hosts["status"] == "silent"]
    lost = int(hosts["lost_events"].sum())
    versions = sorted(v for v in hosts["version"].dropna().unique())
    c = st.columns(4)
    c[0].metric("Hosts", f"{len(hosts):,}")
    c[1].metric("Silent", f"{len(silent):,}")
    c[2].metric("Lost events", f"{lost:,}")
    c[3].metric("Collector versions", ", ".join(versions) or "–")
    if not silent.empty:
        st.error("Not reporting: " + ", ".join(f"**{h}** (last report {t:%Y-%m-%d %H:%M:%S} UTC)"
                                               for h, t in zip(silent["host_id"], silent["last_report"], strict=True)),
                 icon=":material/cloud_off:")
    if len(versions) > 1:
        st.warning(f"Collectors run {len(versions)} different versions: {', '.join(versions)}.",
                   icon=":material/difference:")
    if lost:
        st.warning(f"{lost:,} events were lost in this window (see each host's reports below).",
                   icon=":material/warning:")
    st.dataframe(hosts, hide_index=True, key="hosts_table", on_select="rerun", selection_mode="single-row",
                 column_config={
                     "last_report": st.column_config.DatetimeColumn("last report (UTC)"),
                     "collector_starts": st.column_config.NumberColumn("starts", help="collector runs in the window"),
                     "buffered_rows": st.column_config.NumberColumn(
                         "buffered", help="rows held by the collector while the store was unreachable"),
                     "rss_bytes": st.column_config.NumberColumn("RSS", format="compact"),
                 })
    sel = st.session_state.get("hosts_table")
    rows = sel.selection.rows if sel is not None and hasattr(sel, "selection") else []
    host = hosts.iloc[rows[0]]["host_id"] if rows else (hosts.iloc[0]["host_id"] if len(hosts) == 1 else None)
    host = st.query_params.get("host", host)
    if host is None:
        st.caption("Select a host for its collector reports.")
        return
    st.subheader(f"Host {host}")
    st.button("Show only this host on every page", icon=":material/filter_alt:", on_click=_only, args=(host,))
    reports = ui.cached(q.host_reports, w, host)
    st.dataframe(reports, hide_index=True, column_config={
        "rss_bytes": st.column_config.NumberColumn("RSS", format="compact"),
        "detail": st.column_config.JsonColumn("detail"),
    })


ui.live(body)
