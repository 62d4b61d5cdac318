"""Formats shared by both sides of the gateway. Imports nothing else of ours."""
