"""What `routerwatch dashboard` serves: the Streamlit app (app.py) behind the Host/Origin guard.

`streamlit run` finds the `st.App` below and serves it with uvicorn; the guard (dashboard/host_guard.py)
then sees every HTTP request and websocket upgrade before Streamlit does. Settings come from the
environment `routerwatch dashboard` sets (bind address, --allowed-host names).
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from dashboard.host_guard import HostGuard

app = st.App(Path(__file__).with_name("app.py"), middleware=[Middleware(HostGuard)])
