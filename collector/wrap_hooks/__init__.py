"""Start-up hooks that `routerwatch wrap` injects into the agents it runs (see sitecustomize.py)."""
