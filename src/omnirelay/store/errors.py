"""The store's own errors, so that nothing above it handles a database driver's."""

from __future__ import annotations


class DuplicateEntry(Exception):
    """What was to be written under an id is stored already (a charge is never written twice)."""
