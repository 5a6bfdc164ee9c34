"""Exchanges: a filterable list and the detail of one exchange (redacted bodies, tool calls, secrets)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import queries as q
from dashboard import ui

st.title("LLM exchanges")


def _pretty(text: str | None) -> str:
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return str(text)


def detail(exchange_id: str) -> None:
    d = ui.cached(q.exchange_detail, exchange_id)
    e = ui.first_row(d["exchange"], f"No exchange {exchange_id!r} in the store.")
    if e is None:
        return
    st.subheader(f"Exchange {exchange_id}")
    st.markdown(f"**{e['host']}** · `{e['api']}` · {e['path']} · {e['ts']} · host {e['host_id']}")
    c = st.columns(4)
    c[0].metric("Model requested", str(e["model_requested"]))
    mism = e["model_returned"] is not None and q.model_key(e["model_returned"]) != q.model_key(e["model_requested"])
    c[1].metric("Model returned", str(e["model_returned"]), delta="differs" if mism else None, delta_color="inverse")
    c[2].metric("Status", str(e["status"]))
    c[3].metric("Tool calls", str(e["tool_call_count"]))
    links = st.columns(4)
    with links[0]:
        if e["flow_uid"] is not None:
            ui.link("views/flows.py", f"Flow {e['flow_uid']}", flow=e["flow_uid"])
    with links[1]:
        if pd.notna(e["pid"]):
            ui.link("views/destinations.py", f"Process {int(e['pid'])} on {e['host_id']}", pid=int(e["pid"]))
    with links[2]:
        ui.link("views/routers.py", f"Router {e['host']}", endpoint=e["host"])
    proc = d["process"]
    if not proc.empty:
        st.caption(f"process: {proc.iloc[0]['exe']} — {proc.iloc[0]['cmdline']}")
    if not d["findings"].empty:
        st.error("Findings accounting for this exchange: " + "; ".join(
            f"{r.severity} {r.attack_class}: {r.title}" + ("" if r.raised_here else " (raised by an earlier exchange)")
            for r in d["findings"].itertuples()))
        fcols = st.columns(4)
        for i, r in enumerate(d["findings"].head(8).itertuples()):
            with fcols[i % 4]:
                ui.link("views/findings.py", f"Finding {r.rule_id}", finding=r.finding_id)
    gate = d.get("gate")
    if gate is not None and not gate.empty:
        blocked = gate[gate["action"] == "block"]
        if not blocked.empty:
            st.success("The policy gate blocked " + "; ".join(
                f"{r.tool_name or 'a call'} ({r.rule_id}: {r.reason})" for r in blocked.itertuples())
                + ". The agent never received it: the tool calls below are what the router sent.")
        with st.expander(f"Policy gate: {len(gate)} decision(s)"):
            st.dataframe(gate, hide_index=True)
    st.markdown("**Tool calls** (suspicious parts highlighted)")
    if d["tool_calls"].empty:
        st.caption("none")
    for r in d["tool_calls"].itertuples():
        st.markdown(f"`{r.direction}` #{r.idx} **{r.name}**", unsafe_allow_html=False)
        st.markdown(ui.highlight(_pretty(r.arguments)), unsafe_allow_html=True)
    ui.table_section("Secrets seen", d["secrets"], note="fingerprints only: the store never holds a raw secret")
    left, right = st.columns(2)
    with left:
        st.markdown("**Request** (redacted)")
        st.markdown(ui.highlight(_pretty(e["request_body"])), unsafe_allow_html=True)
    with right:
        st.markdown("**Response** (redacted)")
        st.markdown(ui.highlight(_pretty(e["response_body"])), unsafe_allow_html=True)
    with st.expander("Router fingerprint headers and HTTP"):
        st.code(_pretty(e["router_headers"]) or "{}", language="json")
        st.dataframe(d["http"], hide_index=True)


def body() -> None:
    w = ui.window()
    facets = ui.cached(q.exchange_facets, w)
    c = st.columns([2, 2, 2, 1, 1])
    endpoint = c[0].selectbox("Endpoint", [""] + facets["endpoints"], key="ex_endpoint", format_func=lambda x: x or "all")
    model = c[1].selectbox("Model requested", [""] + facets["models"], key="ex_model", format_func=lambda x: x or "all")
    api = c[2].selectbox("API", [""] + facets["apis"], key="ex_api", format_func=lambda x: x or "all")
    tools = c[3].checkbox("Tool calls", key="ex_tools")
    mism = c[4].checkbox("Model differs", key="ex_mism")
    f = q.ExchangeFilter(endpoint=endpoint, model=model, api=api, only_tool_calls=tools, only_mismatch=mism)
    total = ui.cached(q.exchange_count, w)
    rows = ui.cached(q.exchanges, w, f)
    st.caption(f"{total:,} exchanges in the window; showing the latest {len(rows):,} matching the filters. "
               "Select a row for its detail.")
    sel = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row", key="ex_table",
                       height=300)
    exchange_id = ui.selected_id(sel, rows, "exchange_id", "ex_id", "exchange", "Exchange id")
    if exchange_id:
        detail(exchange_id)


ui.live(body)
