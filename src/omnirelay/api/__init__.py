"""Inbound HTTP, one module per API family. Thin: parse, call the gateway, render."""
