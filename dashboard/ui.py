"""Streamlit glue shared by the pages: the store reader, cached queries, sidebar filters, live refresh."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from collector.config import resolve_store
from collector.store.errors import StoreError
from dashboard import queries
from dashboard.annotations import Annotations

WINDOWS: dict[str, float | None] = {
    "last hour": 1, "last 6 hours": 6, "last 24 hours": 24, "last 7 days": 24 * 7, "last 30 days": 24 * 30,
    "everything": None,
}
SEVERITY_COLORS = {"critical": "#b71c1c", "high": "#e65100", "medium": "#f9a825", "low": "#1565c0"}
CLASS_COLORS = {"provider": "#2e7d32", "router": "#1565c0", "suspected_router": "#c62828", "other": "#9e9e9e"}
PAGES = {  # page file -> title (app.py builds the navigation from this)
    "views/overview.py": "Overview", "views/routers.py": "Routers", "views/destinations.py": "Destinations",
    "views/exchanges.py": "Exchanges", "views/findings.py": "Findings", "views/flows.py": "Flows",
    "views/sql.py": "SQL",
}


def store_spec() -> str:
    return resolve_store(None)


@st.cache_resource(show_spinner=False)
def _reader(spec: str) -> queries.Reader:
    return queries.Reader(spec)


def reader() -> queries.Reader:
    return _reader(store_spec())


@st.cache_resource(show_spinner=False)
def _annotations(spec: str) -> Annotations:
    return Annotations(spec)


def annotations() -> Annotations:
    return _annotations(store_spec())


@st.cache_data(ttl=600, max_entries=512, show_spinner=False)
def _run(spec: str, name: str, tick: int, args: tuple) -> Any:
    return getattr(queries, name)(_reader(spec), *args)


def cached(fn: Callable, *args: Any) -> Any:
    """Run a `queries` function, cached until the next refresh tick (live) or the Refresh button."""
    try:
        return _run(store_spec(), fn.__name__, tick(), args)
    except StoreError as exc:
        st.error(str(exc))
        st.stop()
    except duckdb.CatalogException as exc:  # a store written by an older version, never migrated since
        st.warning(f"This store lacks a table or column this page needs ({str(exc).splitlines()[0]}). Any "
                   "writer migrates it on open, e.g. `routerwatch store compact`.")
        st.stop()


def tick() -> int:
    if st.session_state.get("rw_live"):
        every = float(st.session_state.get("rw_interval", 5))
        return int(time.time() // every)
    return int(st.session_state.get("rw_tick", 0))


def window() -> queries.Window:
    label = st.session_state.get("rw_window", "last 24 hours")
    return queries.Window.last(WINDOWS.get(label, 24), tuple(st.session_state.get("rw_hosts", ())))


def sidebar(user: str | None) -> None:
    """Time window, hosts, live refresh; the same for every page."""
    st.session_state.setdefault("rw_window", "last 24 hours")
    st.session_state.setdefault("rw_interval", 5)
    with st.sidebar:
        st.selectbox("Time window", list(WINDOWS), key="rw_window")
        try:
            hosts = cached(queries.known_hosts)
        except Exception:  # an empty or brand-new store: no filter yet
            hosts = []
        st.multiselect("Hosts", hosts, key="rw_hosts", placeholder="all hosts")
        c1, c2 = st.columns([3, 2])
        c1.toggle("Live", key="rw_live", help="re-run this page's queries every few seconds")
        c2.number_input("every s", min_value=2, max_value=300, key="rw_interval", label_visibility="collapsed")
        if st.button("Refresh", icon=":material/refresh:", width="stretch"):
            st.session_state["rw_tick"] = st.session_state.get("rw_tick", 0) + 1
        st.caption(f"store: `{store_spec()}` (read-only)")
        if user:
            st.caption(f"signed in: {user}")
            if st.session_state.get("rw_oidc"):
                st.button("Log out", on_click=st.logout)


def live(body: Callable[[], None]) -> None:
    """Run the page `body`; while Live is on, a timer re-runs the whole app every N seconds.

    The timer is a tiny `st.fragment(run_every=N)` that asks for a full rerun: pages are not run inside
    fragments themselves, because a widget event inside a fragment re-runs only that fragment, and with
    `st.navigation` the sidebar (navigation, filters) is then lost.
    """
    body()
    if not st.session_state.get("rw_live"):
        return
    every = float(st.session_state.get("rw_interval", 5))
    st.session_state["rw_last_full_run"] = time.monotonic()

    def _tick() -> None:
        if time.monotonic() - st.session_state.get("rw_last_full_run", 0.0) >= every * 0.8:
            st.rerun(scope="app")

    st.fragment(run_every=every)(_tick)()


def link(page: str, label: str, **params: Any) -> None:
    st.page_link(page, label=label, query_params={k: str(v) for k, v in params.items()})


def human_bytes(n: float | None) -> str:
    if n is None or pd.isna(n):
        return "–"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


# Parts of a tool call that deserve a second look (AC-1 shapes); highlighting only, the analyzer decides.
SUSPICIOUS = re.compile(
    r"(curl|wget)[^|;&]*\|\s*(ba|z|da)?sh|bash\s+-c\s+\"?\$\((curl|wget)[^)]*\)|base64\s+(-d|--decode)[^|]*\|\s*\w*sh"
    r"|/dev/tcp/[\w.\-]+/\d+|nc\s+(-e|-c)\s|\.aws/credentials|\.ssh/id_\w+|wallet\.dat|keystore"
    r"|(pip3?|npm|yarn|pnpm|cargo|go)\s+(install|add|get)\s+[\w@/.\-=]+|https?://[^\s\"'\\]+|\benv\b|printenv",
    re.IGNORECASE,
)
SECRET_PLACEHOLDER = re.compile(r"\[REDACTED[^\]]*\]")  # collector.secrets.REDACTED_FMT


def highlight(text: str) -> str:
    """HTML-escaped `text` with suspicious parts and secret placeholders marked (input is hostile)."""
    out, pos = [], 0
    spans = sorted([(m.start(), m.end(), "sus") for m in SUSPICIOUS.finditer(text)]
                   + [(m.start(), m.end(), "sec") for m in SECRET_PLACEHOLDER.finditer(text)])
    for start, end, kind in spans:
        if start < pos:
            continue
        out.append(html.escape(text[pos:start]))
        style = "background:#ffcdd2;color:#b71c1c" if kind == "sus" else "background:#e1f5fe;color:#01579b"
        out.append(f'<mark style="{style}">{html.escape(text[start:end])}</mark>')
        pos = end
    out.append(html.escape(text[pos:]))
    return ('<div style="white-space:pre-wrap;font-family:monospace;font-size:0.8em;line-height:1.35">'
            + "".join(out) + "</div>")
