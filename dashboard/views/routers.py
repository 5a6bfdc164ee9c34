"""Routers: every LLM endpoint, who uses it, models requested vs returned, fingerprints, findings."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import queries as q
from dashboard import ui

st.title("Routers and providers")


def body() -> None:
    w = ui.window()
    rs = ui.cached(q.routers_summary, w)
    if rs.empty:
        st.info("No LLM exchanges in this window.")
        return
    suspected = rs[rs["class"] == "suspected_router"]
    if not suspected.empty:
        st.error("Suspected routers (LLM API traffic to a host that is neither a known provider nor a catalogued "
                 "router): " + ", ".join(f"**{h}**" for h in suspected["endpoint"]), icon=":material/gpp_maybe:")
    view = ui.as_counts(rs[["class", "name", "endpoint", "exchanges", "hosts", "processes", "models_requested",
                            "models_returned", "model_mismatches", "tool_calls", "findings", "serious_findings",
                            "bytes_out", "bytes_in", "fingerprint_headers"]],
                        "exchanges", "hosts", "processes", "model_mismatches", "tool_calls", "findings",
                        "serious_findings", "bytes_out", "bytes_in")
    st.dataframe(
        view.style.apply(lambda row: ["background-color:#ffebee" if row["class"] == "suspected_router" else ""
                                      for _ in row], axis=1),
        hide_index=True, key="routers_table",
        column_config={"bytes_out": st.column_config.NumberColumn(format="compact"),
                       "bytes_in": st.column_config.NumberColumn(format="compact")},
    )
    fig = px.bar(rs, x="endpoint", y="exchanges", color="class", color_discrete_map=ui.CLASS_COLORS, height=260)
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0))
    st.plotly_chart(fig, key="routers_bar")

    default = 0
    endpoints = list(rs["endpoint"])
    wanted = st.query_params.get("endpoint")
    if wanted in endpoints:
        default = endpoints.index(wanted)
    endpoint = st.selectbox("Details for", endpoints, index=default, key="router_pick")
    row = rs[rs["endpoint"] == endpoint].iloc[0]
    c = st.columns([3, 2, 2, 2])  # the class ("suspected router") needs the room; the counts do not
    c[0].metric("Class", ui.CLASS_LABELS.get(row["class"], str(row["class"])))
    c[1].metric("Exchanges", f"{int(row['exchanges']):,}")
    c[2].metric("Model mismatches", f"{int(row['model_mismatches']):,}")
    c[3].metric("Findings", f"{int(row['findings']):,}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Hosts and processes using it**")
        st.dataframe(ui.cached(q.router_users, w, endpoint), hide_index=True)
    with right:
        st.markdown("**Models requested vs returned**")
        models = ui.cached(q.router_models, w, endpoint)
        st.dataframe(models.style.apply(
            lambda r: ["color:#c62828;font-weight:bold" if r["model_returned"] is not None
                       and q.model_key(r["model_returned"]) != q.model_key(r["model_requested"]) else "" for _ in r],
            axis=1), hide_index=True)
    baseline(row["name"] if isinstance(row["name"], str) else endpoint, endpoint)
    st.markdown("**Fingerprint headers**")
    st.code("\n".join(row["fingerprint_headers"]) if len(row["fingerprint_headers"]) else "(none)", language="json")
    st.markdown("**Findings**")
    fx = ui.cached(q.router_findings, w, endpoint)
    if fx.empty:
        st.caption("No findings for this endpoint in the window.")
    else:
        st.dataframe(fx, hide_index=True)
        for fid in fx["finding_id"].head(5):
            ui.link("views/findings.py", f"Finding {fid}", finding=fid)


def baseline(name: str, endpoint: str) -> None:
    """The router's behaviour so far, across every host and run (router_baseline): what the
    conditional-delivery rule (AC-1.b) compares a turn with."""
    b = ui.cached(q.router_baseline, name)
    if b.empty and name != endpoint:
        b = ui.cached(q.router_baseline, endpoint)
    st.markdown("**Behaviour baseline** (all hosts, all runs: what AC-1.b compares each turn with)")
    if b.empty:
        st.caption("No baseline yet: `routerwatch analyze` builds it from this router's exchanges.")
        return
    r = b.iloc[0]
    c = st.columns(5)
    c[0].metric("Baseline exchanges", f"{int(r['exchanges']):,}")
    c[1].metric("Clean", f"{int(r['clean_exchanges']):,}")
    c[2].metric("Execution payloads", f"{int(r['execution_exchanges']):,}",
                delta="turned" if r["execution_exchanges"] else None, delta_color="inverse")
    c[3].metric("Hosts (all runs)", f"{len(r['hosts']):,}")
    n = int(r["latency_n"] or 0)
    sd = (float(r["latency_m2"]) / n) ** 0.5 if n and r["latency_m2"] is not None else None
    c[4].metric("Latency", f"{r['latency_mean_ms']:.0f} ms" if n else "-", delta=f"± {sd:.0f} ms" if sd is not None else None,
                delta_color="off")
    st.caption(f"first seen {r['first_seen']} · last seen {r['last_seen']} · tool-call exchanges "
               f"{int(r['tool_call_exchanges']):,}" + (f" · first execution payload {r['first_execution_ts']}"
                                                       if r["first_execution_ts"] is not None and str(r["first_execution_ts"]) != "NaT" else ""))
    left, right = st.columns(2)
    with left:
        st.markdown("Tool-call indicator kinds seen")
        st.code("\n".join(r["indicator_kinds"]) if len(r["indicator_kinds"]) else "(none)")
        st.markdown("Model families (requested -> returned)")
        st.code("\n".join(r["families"]) if len(r["families"]) else "(none)")
    with right:
        st.markdown("Response fingerprints")
        st.code("\n".join(r["fingerprints"]) if len(r["fingerprints"]) else "(none)")
        st.markdown("Hosts")
        st.code("\n".join(r["hosts"]) if len(r["hosts"]) else "(none)")


ui.live(body)
