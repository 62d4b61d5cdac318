"""Upstream task APIs, one dialect per module (``base.TaskDialect``), found by family and
channel type (``registry``)."""
