"""Batches run by the gateway itself, for any upstream: OpenAI's ``/v1/files`` and
``/v1/batches``, each line a call through the one pipeline."""
