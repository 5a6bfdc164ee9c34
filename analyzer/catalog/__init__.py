"""The router catalog: provider endpoints, known routers, router-software fingerprints, allowlists.

The builtin catalog ships as `catalog.yaml` in this package; a user's `catalog.yaml` beside the
store (or $ROUTERWATCH_CATALOG) extends it: named entries with the same name replace builtin ones
(`disabled: true` removes one), lists extend, maps update.
"""

from analyzer.catalog.loader import Catalog, load_catalog, user_catalog_path

__all__ = ["Catalog", "load_catalog", "user_catalog_path"]
