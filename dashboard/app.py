"""routerwatch dashboard entry point: `routerwatch dashboard` runs `streamlit run` on this file.

Pages live in views/, not pages/: Streamlit auto-discovers a `pages/` folder beside the entry point and,
for a deep link such as /flows, runs that file directly, skipping this script (and so the auth gate).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth, ui

HERE = Path(__file__).parent
ICONS = {
    "Overview": ":material/dashboard:", "Routers": ":material/router:", "Destinations": ":material/travel_explore:",
    "Exchanges": ":material/forum:", "Findings": ":material/report:", "Flows": ":material/swap_horiz:",
    "Hosts": ":material/dns:", "SQL": ":material/terminal:",
}

st.set_page_config(page_title="routerwatch", page_icon=":material/policy:", layout="wide")
user = auth.require()
st.session_state["rw_user"] = user  # the author of acknowledgements and notes
st.session_state["rw_oidc"] = auth.mode() == "oidc"
pages = [
    st.Page(str(HERE / path), title=title, icon=ICONS[title], default=title == "Overview")
    for path, title in ui.PAGES.items()
]
page = st.navigation(pages)
ui.sidebar(user)
page.run()
