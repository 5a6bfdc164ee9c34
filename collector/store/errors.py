"""Store errors carry a one-line message meant for the user."""


class StoreError(Exception):
    """A store could not be opened, migrated or written; the message says what to do."""


class StoreBusyError(StoreError):
    """A write gave up after retrying transient conflicts until its deadline; nothing committed is
    lost, and the message says what was not committed. Command-line exit status 75 (EX_TEMPFAIL)."""

    exit_code = 75
