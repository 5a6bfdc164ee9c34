"""Findings: triage by severity, class and host; evidence links; acknowledge and annotate.

Acknowledgements and notes go to the dashboard's own state file (dashboard/annotations.py), never to
the store.
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import queries as q
from dashboard import ui
from dashboard.annotations import Annotations

st.title("Findings")
SEVERITIES = ["critical", "high", "medium", "low"]


def body() -> None:
    w = ui.window()
    notes = ui.annotations()
    acked = notes.acknowledged()
    rows, sel = _listing(w, acked)
    _gate(w)
    fid = ui.selected_id(sel, rows, "finding_id", "fd_id", "finding", "Finding id")
    if not fid:
        return
    f = ui.first_row(ui.cached(q.finding, fid), f"No finding {fid!r}.")
    if f is None:
        return
    _detail(f, fid)
    _triage(fid, notes, fid in acked)


def _listing(w: q.Window, acked: set[str]) -> tuple[pd.DataFrame, object]:
    """Counts per severity, the filters, the chart per class and the selectable table of findings.
    Returns the rows shown and the table's selection."""
    counts = ui.cached(q.findings_counts, w)
    by_sev = counts.groupby("severity")["n"].sum() if not counts.empty else {}
    c = st.columns(4)
    for i, s in enumerate(SEVERITIES):
        c[i].metric(s.capitalize(), f"{int(by_sev.get(s, 0)):,}")
    f1, f2, f3 = st.columns([2, 2, 1])
    sev = f1.multiselect("Severity", SEVERITIES, key="fd_sev", placeholder="all severities")
    classes = sorted(counts["attack_class"].dropna().unique()) if not counts.empty else []
    cls = f2.multiselect("Attack class", classes, key="fd_cls", placeholder="all classes")
    show_acked = f3.checkbox("Show acknowledged", key="fd_acked")
    rows = ui.cached(q.findings, w, tuple(sev), tuple(cls))
    rows = rows.assign(acknowledged=rows["finding_id"].isin(acked))
    if not show_acked:
        rows = rows[~rows["acknowledged"]]
    if not counts.empty:
        fig = px.bar(counts, x="attack_class", y="n", color="severity", color_discrete_map=ui.SEVERITY_COLORS,
                     height=220, category_orders={"severity": SEVERITIES})
        fig.update_layout(margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(fig, key="fd_chart")
    st.caption(f"{len(rows):,} findings shown ({len(acked):,} acknowledged overall). Select one to triage.")
    sel = st.dataframe(
        rows.drop(columns=["evidence"]).style.apply(
            lambda r: [f"color:{ui.SEVERITY_COLORS.get(r['severity'], '')};font-weight:bold"
                       if col == "severity" else "" for col in r.index], axis=1),
        hide_index=True, on_select="rerun", selection_mode="single-row", key="fd_table", height=300)
    return rows, sel


def _gate(w: q.Window) -> None:
    """The policy gate's decisions in the window, when there are any."""
    gate = ui.cached(q.gate_counts, w)
    if gate:
        with st.expander(f"Policy gate: {gate.get('block', 0):,} blocked, {gate.get('record', 0):,} recorded, "
                         f"{gate.get('allow', 0):,} allowed", expanded=bool(gate.get("block"))):
            st.caption("Tool calls judged by `wrap --proxy --enforce` and `routerwatch gate` hooks before the agent "
                       "ran them; a blocked call never reached the agent (proxy) or was denied (hook).")
            st.dataframe(ui.cached(q.gate_decisions, w), hide_index=True, key="fd_gate", height=220)


def _detail(f: pd.Series, fid: str) -> None:
    """One finding: what and where, links to its exchange, flow, router and process, the evidence and
    what it accounts for."""
    st.subheader(f"{f['severity'].upper()} · {f['attack_class']} · {f['title']}")
    st.caption(f"rule {f['rule_id']} rev {f['rule_rev']} · host {f['host_id']} · pid {f['pid']} · {f['ts']}")
    links = st.columns(4)
    with links[0]:
        if f["exchange_id"]:
            ui.link("views/exchanges.py", f"Exchange {f['exchange_id']}", exchange=f["exchange_id"])
    with links[1]:
        if f["flow_uid"]:
            ui.link("views/flows.py", f"Flow {f['flow_uid']}", flow=f["flow_uid"])
    with links[2]:
        if f["router"]:
            ui.link("views/routers.py", f"Router {f['router']}", endpoint=f["router"])
    with links[3]:
        if f["pid"] is not None:
            ui.link("views/destinations.py", f"Process {f['pid']}", pid=f["pid"])
    try:
        st.json(json.loads(f["evidence"]) if f["evidence"] else {}, expanded=True)
    except ValueError:
        st.code(str(f["evidence"]))
    coverage(fid)


def _triage(fid: str, notes: Annotations, is_acked: bool) -> None:
    """Acknowledge, reopen or annotate one finding (the dashboard's own state file), and its history."""
    st.markdown(f"**Status:** {'acknowledged' if is_acked else 'open'}")
    with st.form(f"triage_{fid}", clear_on_submit=True):
        note = st.text_area("Note", placeholder="what you checked, who owns it…")
        b1, b2, b3 = st.columns(3)
        do_ack = b1.form_submit_button("Acknowledge", disabled=is_acked)
        do_unack = b2.form_submit_button("Reopen", disabled=not is_acked)
        do_note = b3.form_submit_button("Add note")
    author = st.session_state.get("rw_user")
    if do_ack:
        notes.acknowledge(fid, author, note or None)
        st.rerun()
    if do_unack:
        notes.unacknowledge(fid, author)
        st.rerun()
    if do_note and note:
        notes.annotate(fid, note, author)
        st.rerun()
    history = notes.history(fid)
    if history:
        st.markdown("**History**")
        for ts, who, action, text in history:
            st.markdown(f"- `{ts}` {who or ''} **{action}** {text or ''}")
    st.caption(f"Triage state is kept in {notes.path}, apart from the captured data.")


def coverage(fid: str) -> None:
    """Every exchange and flow this finding accounts for: a deduplicated finding (one per router and
    model pair a day, one per router for AC-1.b, ...) still names each exchange that showed it."""
    cov = ui.cached(q.finding_coverage, fid)
    ex = cov["exchange_id"].dropna().unique() if not cov.empty else []
    fl = cov["flow_uid"].dropna().unique() if not cov.empty else []
    st.markdown(f"**Accounts for {len(ex):,} exchange(s) and {len(fl):,} flow(s)** "
                "(append-only coverage: later evidence with the same dedup key adds rows, never edits the finding)")
    if cov.empty:
        return
    st.dataframe(cov, hide_index=True, key=f"fd_cov_{fid}", height=min(400, 38 + 35 * len(cov)))
    cols = st.columns(4)
    for i, x in enumerate(ex[:8]):
        with cols[i % 4]:
            ui.link("views/exchanges.py", f"Exchange {str(x)[:12]}…", exchange=x)


ui.live(body)
