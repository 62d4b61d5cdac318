"""Durable state: tables, migrations and repositories."""
