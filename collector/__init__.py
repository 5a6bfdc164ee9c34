"""routerwatch collector: observes an agent host and produces raw facts for the store."""

__version__ = "0.1.0"
