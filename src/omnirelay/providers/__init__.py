"""Outbound dialects: one module per upstream API family, plus a registry."""
