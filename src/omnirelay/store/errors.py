"""The store's own errors, so that nothing above it handles a database driver's."""

from __future__ import annotations


class NameTaken(Exception):
    """A row with this unique name exists already."""
