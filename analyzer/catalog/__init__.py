"""The router catalog now lives in collector.catalog (the proxy's policy gate reads it too); these
names stay importable from here for code written against the old place."""

from collector.catalog import Catalog, CatalogError, load_catalog, split_host_port, user_catalog_path

__all__ = ["Catalog", "CatalogError", "load_catalog", "split_host_port", "user_catalog_path"]
