"""Store errors carry a one-line message meant for the user."""


class StoreError(Exception):
    """A store could not be opened, migrated or written; the message says what to do."""
