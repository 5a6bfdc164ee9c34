"""routerwatch analyzer: enrichment, correlation, SQL rules and findings over the store."""
