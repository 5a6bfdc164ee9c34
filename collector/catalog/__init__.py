"""The router catalog: provider endpoints, known routers, router-software fingerprints, allowlists.

The builtin catalog ships as `catalog.yaml` in this package; a user's `catalog.yaml` beside the
store (or $ROUTERWATCH_CATALOG) extends it: named entries with the same name replace builtin ones
(`disabled: true` removes one), lists extend, maps update.

It lives in the collector because both sides read it: the analyzer classifies destinations and
applies the allowlist after the fact, the proxy's policy gate names routers and trusts the same
allowlisted package sources before the agent runs a call (one list for both).
"""

from collector.catalog.loader import Catalog, CatalogError, load_catalog, split_host_port, user_catalog_path

__all__ = ["Catalog", "CatalogError", "load_catalog", "split_host_port", "user_catalog_path"]
