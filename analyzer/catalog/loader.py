"""Moved to collector.catalog.loader (kept importable for code written against the old place)."""

from collector.catalog.loader import *  # noqa: F403
from collector.catalog.loader import Catalog, CatalogError, load_catalog, split_host_port, user_catalog_path  # noqa: F401
