"""Streamlit glue shared by the pages: the store reader, cached queries, sidebar filters, live refresh."""

from __future__ import annotations

import datetime as dt
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
    "views/hosts.py": "Hosts", "views/sql.py": "SQL",
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


DEFAULT_WINDOW = "last 24 hours"


def window() -> queries.Window:
    label = st.session_state.get("rw_window", DEFAULT_WINDOW)
    return queries.Window.last(WINDOWS.get(label, 24), tuple(st.session_state.get("rw_hosts", ())))


def window_for(newest: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """The smallest time window (at least the default) that contains `newest`."""
    if newest is None:
        return DEFAULT_WINDOW
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    age_h = (now - newest).total_seconds() / 3600
    for label, hours in WINDOWS.items():
        if hours is not None and hours >= WINDOWS[DEFAULT_WINDOW] and age_h < hours * 0.98:
            return label
    return "everything"


def newest() -> dt.datetime | None:
    """Where the data is: the newest row of the store (for the hosts picked), None on an empty store."""
    try:  # not through cached(): a missing store is the page's to report, not the sidebar's
        return _run(store_spec(), "newest_data", tick(), (tuple(st.session_state.get("rw_hosts", ())),))
    except (StoreError, duckdb.Error):  # no store yet, or one without these tables
        return None


def _ago(t: dt.datetime) -> str:
    secs = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - t).total_seconds()
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= n:
            k = int(secs // n)
            return f"{k} {unit}{'s' if k != 1 else ''} ago"
    return "just now"


def data_notice() -> None:
    """On every page: when the window holds none of the store's newest data (a capture ingested last
    week, a collector stopped days ago), say where the data is and offer the window that shows it."""
    t = newest()
    w = window()
    if t is None or w.start is None or t >= w.start:
        return
    target = window_for(t)
    box = st.container(border=True)
    box.markdown(f":material/history: Nothing new in the **{st.session_state.get('rw_window')}**: the store's newest "
                 f"data is from **{t:%Y-%m-%d %H:%M} UTC** ({_ago(t)}).")
    box.button(f"Show the {target}", key="rw_show_data", icon=":material/zoom_out_map:",
               on_click=lambda: st.session_state.update(rw_window=target))


def sidebar(user: str | None) -> None:
    """Time window, hosts, live refresh; the same for every page. A new session opens on a window that
    contains the store's newest data (the default 24 hours, or wider when the data is older)."""
    if "rw_window" not in st.session_state:
        st.session_state["rw_window"] = window_for(newest())
    st.session_state.setdefault("rw_interval", 5)
    data_notice()
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
        from collector.store.remote import display_spec

        st.caption(f"store: `{display_spec(store_spec())}` (read-only)")
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


def selected_id(sel: Any, rows: pd.DataFrame, column: str, key: str, param: str, label: str) -> str:
    """The id a list page shows in detail: the row picked in its table (`sel`, from a single-row
    `st.dataframe` selection), else what is in the text box `key`, which a link from another page
    fills from the query parameter `param` on the session's first visit. Stripped; '' for none."""
    picked = ""
    if sel is not None and getattr(sel, "selection", None) and sel.selection.rows:
        picked = str(rows.iloc[sel.selection.rows[0]][column])
    if picked:
        st.session_state[key] = picked
    elif key not in st.session_state:
        st.session_state[key] = st.query_params.get(param, "")
    return st.text_input(label, key=key).strip()


def first_row(frame: pd.DataFrame, missing: str) -> pd.Series | None:
    """The row a detail view shows, or None after a warning `missing` when the store has none."""
    if frame.empty:
        st.warning(missing)
        return None
    return frame.iloc[0]


def table_section(title: str, frame: pd.DataFrame, empty: str = "none", note: str = "") -> bool:
    """A bold title (and a `note` in parentheses) over `frame` as a table, or a caption `empty` when
    it has no rows. True when the table is shown."""
    st.markdown(f"**{title}**" + (f" ({note})" if note else ""))
    if frame.empty:
        st.caption(empty)
        return False
    st.dataframe(frame, hide_index=True)
    return True


def as_counts(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """Count columns as integers (SQL sums arrive as floats, and a styled table prints floats with six
    decimals: `160001.000000`)."""
    frame = frame.copy()
    for c in cols:
        if c in frame:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").round().astype("Int64")
    return frame


CLASS_LABELS = {"suspected_router": "suspected router", "provider": "provider", "router": "router", "other": "other"}


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
