"""Flows: an explorer with filters and export; one flow's details and, when retained, its packets."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import capture, ui
from dashboard import queries as q

st.title("Flows")


@st.cache_data(ttl=300, max_entries=32, show_spinner="Dissecting packets with tshark…")
def _packets(paths: tuple[str, ...], flow: dict) -> list[dict]:
    from pathlib import Path

    return capture.packets([Path(p) for p in paths], pd.Series(flow))


def flow_detail(uid: str) -> None:
    d = ui.cached(q.flow_detail, uid)
    f = ui.first_row(d["flow"], f"No flow {uid!r} in the store.")
    if f is None:
        return
    st.subheader(f"Flow {uid}")
    st.markdown(f"`{f['proto']}` **{f['src_ip']}:{f['src_port']} → {f['dst_ip']}:{f['dst_port']}** "
                f"({f['server_name'] or 'no name'}) · {f['ts_start']} → {f['ts_end']} · "
                f"out {ui.human_bytes(f['bytes_out'])} / in {ui.human_bytes(f['bytes_in'])} · state {f['tcp_state']}")
    left, right = st.columns(2)
    with left:
        if ui.table_section("Process", d["process"], "not attributed to a process"):
            pid = int(d["process"].iloc[0]["pid"])
            ui.link("views/destinations.py", f"Process {pid} timeline", pid=pid)
        ui.table_section("TLS", d["tls"], "no TLS record")
    with right:
        ui.table_section("DNS that named it", d["dns"], "no DNS record")
        if ui.table_section("LLM exchanges on this flow", d["exchanges"]):
            for x in d["exchanges"]["exchange_id"].head(5):
                ui.link("views/exchanges.py", f"Exchange {x}", exchange=x)
    st.markdown("**Packets**")
    found = capture.capture_paths(ui.reader(), f)
    if not found.paths:
        st.info(f"No packets to show: {found.note}.")
        return
    st.caption("retained in: " + ", ".join(str(p) for p in found.paths) + f" · filter `{capture.display_filter(f)}`")
    if st.toggle("Dissect packets (pyshark)", key=f"pk_{uid}"):
        try:
            pkts = _packets(tuple(str(p) for p in found.paths), {k: f[k] for k in
                            ("proto", "src_ip", "dst_ip", "src_port", "dst_port", "ts_start", "ts_end")})
        except Exception as exc:  # tshark missing or a damaged file: say so, keep the page
            st.error(f"Could not dissect the capture: {exc}")
            return
        st.caption(f"{len(pkts)} packets (at most 200)")
        st.dataframe(pd.DataFrame([{k: p[k] for k in ("no", "time", "protocol", "length", "file")} for p in pkts]),
                     hide_index=True, height=200)
        for p in pkts[:50]:
            with st.expander(f"#{p['no']} {p['time']} {p['protocol']} {p['length']} bytes"):
                for layer, lines in p["layers"].items():
                    st.markdown(f"**{layer}**")
                    st.code("\n".join(lines), language=None)


def body() -> None:
    w = ui.window()
    c = st.columns([3, 1, 1, 1, 1])
    dest = c[0].text_input("Destination (name contains, or exact IP)", key="fl_dest")
    port = c[1].number_input("Port", min_value=0, max_value=65535, value=0, key="fl_port")
    pid = c[2].number_input("PID", min_value=0, value=0, key="fl_pid")
    proto = c[3].selectbox("Proto", ["", "tcp", "udp"], key="fl_proto", format_func=lambda x: x or "any")
    min_kb = c[4].number_input("Min KB", min_value=0, value=0, key="fl_minkb")
    f = q.FlowFilter(destination=dest.strip(), dst_port=int(port) or None, pid=int(pid) or None, proto=proto,
                     min_bytes=int(min_kb) * 1024)
    total = ui.cached(q.flow_count, w, f)
    rows = ui.cached(q.flows, w, f)
    st.caption(f"**{total:,}** flows match; showing the latest {len(rows):,}. Select a row for its detail.")
    e1, e2, _ = st.columns([1, 1, 4])
    r = ui.reader()
    e1.download_button("Export CSV", data=lambda: q.flows_export(r, w, f, "csv"), file_name="flows.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")
    e2.download_button("Export Parquet", data=lambda: q.flows_export(r, w, f, "parquet"), file_name="flows.parquet",
                       mime="application/vnd.apache.parquet", icon=":material/download:", on_click="ignore")
    sel = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row", key="fl_table",
                       height=320, column_config={"bytes_out": st.column_config.NumberColumn(format="compact"),
                                                  "bytes_in": st.column_config.NumberColumn(format="compact")})
    uid = ui.selected_id(sel, rows, "flow_uid", "fl_id", "flow", "Flow uid")
    if uid:
        flow_detail(uid)


ui.live(body)
