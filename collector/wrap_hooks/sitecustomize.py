"""Key logging for every Python TLS client that `routerwatch wrap` starts.

Python writes a key log only from `ssl.create_default_context()`, and only when SSLKEYLOGFILE is
set; clients that build `ssl.SSLContext(...)` themselves (httpx2 in the openai and anthropic SDKs
on Linux) never write one. `routerwatch wrap` puts this directory first on PYTHONPATH, so this
module runs at interpreter start-up and sets `keylog_filename` on every new SSLContext.
Afterwards it runs the sitecustomize that this one shadowed, if any, so a distribution's hook
still runs. It does nothing unless SSLKEYLOGFILE is set.
"""

from __future__ import annotations

import os
import sys


def _install(path: str) -> None:
    import ssl

    original = ssl.SSLContext.__new__

    def __new__(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        ctx = original(cls, *args, **kwargs)
        try:
            ctx.keylog_filename = path
        except (OSError, AttributeError, ValueError):
            pass  # a key log that cannot be written must never break the agent
        return ctx

    ssl.SSLContext.__new__ = staticmethod(__new__)  # type: ignore[method-assign]


def _chain() -> None:
    """Run the sitecustomize that this one shadows (e.g. a distribution's)."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # a broken distribution hook must not stop the agent either
        pass


_path = os.environ.get("SSLKEYLOGFILE")
if _path:
    _install(_path)
_chain()
