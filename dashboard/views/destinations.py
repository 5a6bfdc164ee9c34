"""Destinations: first-seen and unexpected egress by process tree; an agent's egress timeline."""

from __future__ import annotations

import datetime as dt

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import queries as q
from dashboard import ui

st.title("Destinations")


def body() -> None:
    w = ui.window()
    d = ui.cached(q.destinations, w)
    unexpected = d[d["class"] == "other"]
    st.subheader("First seen in this window")
    c = st.columns(3)
    c[0].metric("New destinations", f"{len(d):,}")
    c[1].metric("Unexpected (not a provider or router)", f"{len(unexpected):,}")
    c[2].metric("Hosts", f"{d['host_id'].nunique():,}")
    if d.empty:
        st.info("No destination was reached for the first time in this window.")
    else:
        st.dataframe(
            d.style.apply(lambda r: ["background-color:#fff3e0" if r["class"] == "other" else "" for _ in r], axis=1),
            hide_index=True, key="dest_table")

    st.subheader("Agent egress timeline")
    agents = ui.cached(q.agent_processes, w)
    if agents.empty:
        st.info("No agent process (a process with LLM exchanges) in this window.")
        return
    labels = [f"{r.host_id} · pid {r.pid} · {r.exe or '?'} · {r.exchanges} exchanges, {int(r.tool_calls or 0)} tool calls"
              for r in agents.itertuples()]
    pick = 0
    want = st.query_params.get("pid")
    if want:
        hit = agents.index[agents["pid"].astype(str) == want]
        pick = int(hit[0]) if len(hit) else 0
    choice = st.selectbox("Agent process", range(len(agents)), index=pick, format_func=lambda i: labels[i],
                          key="agent_pick")
    a = agents.iloc[choice]
    last = a.last_exchange.to_pydatetime()
    first = max(a.first_exchange.to_pydatetime(), last - dt.timedelta(hours=1))
    st.caption(f"Its last hour of LLM activity: {first:%Y-%m-%d %H:%M:%S} – {last:%H:%M:%S} UTC, ±5 minutes.")
    tl = ui.cached(q.agent_timeline, str(a.host_id), int(a.pid), first, last)
    tree, flows, ex = tl["tree"], tl["flows"], tl["exchanges"]
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Process tree**")
        if tree.empty:
            st.caption("No process record for this pid.")
        else:
            st.code("\n".join(f"{'  ' * int(r.depth)}{r.pid} {r.exe or ''}  {r.cmdline or ''}"[:160]
                              for r in tree.itertuples()), language=None)
    with right:
        fig = go.Figure()
        if not flows.empty:
            names = {int(r.pid): f"{r.pid} {str(r.exe or '').rsplit('/', 1)[-1]}" for r in tree.itertuples()}
            flows = flows.assign(process=flows["pid"].map(lambda p: names.get(int(p), str(p))))
            sc = px.scatter(flows, x="ts_start", y="process", color="destination", size=(flows["bytes_in"].fillna(0)
                            + flows["bytes_out"].fillna(0) + 1).pow(0.3), hover_data=["dst_port", "flow_uid"])
            for trace in sc.data:
                fig.add_trace(trace)
        if not ex.empty:
            tools = ex["tool_call_count"].fillna(0) > 0
            fig.add_trace(go.Scatter(
                x=ex["ts"], y=["LLM exchanges"] * len(ex), mode="markers", name="LLM exchange",
                marker=dict(symbol="diamond", size=10, color=["#c62828" if t else "#90a4ae" for t in tools]),
                text=ex["endpoint"] + " · " + ex["model_returned"].fillna("?") + " · " + ex["exchange_id"],
                hoverinfo="x+text"))
        fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="",
                          yaxis_title="", legend=dict(orientation="h", y=-0.2))
        st.plotly_chart(fig, key="timeline")
        st.caption("Dots: egress flows of the agent and its descendants (size ~ bytes). Diamonds: its LLM "
                   "exchanges (red when the response carried tool calls).")
    st.markdown(f"**Flows in the timeline** ({len(flows):,})")
    st.dataframe(flows, hide_index=True)


ui.live(body)
