"""The benchmark harness: a fake upstream, the gateway in each mode, wrk, and /proc.

Run it with ``.venv/bin/python -m bench`` (``--help`` for the options). It is not part of
CI; the results and the command that made them go in ``docs/benchmarks.md``.
"""
