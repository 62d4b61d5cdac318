"""The relay core: auth, routing, pricing, usage and logging. Imports no web framework."""
