"""Values many test modules agree on: the fake upstream's key, the services, the limits."""

from __future__ import annotations

# The key every fake upstream expects; it must never appear in what the gateway answers.
UPSTREAM_KEY = "sk-upstream-secret-7f3a9c"
# The body limit the session gateway runs with (OMNIRELAY_MAX_BODY_BYTES).
BODY_LIMIT = 2 * 1024 * 1024
# The local Redis the counters tests use (CI starts it: .ci/run).
REDIS_URL = "redis://127.0.0.1:6379/0"
# A fixed Fernet key for gateways that share one database, as an operator sets it on every node.
SHARED_FERNET_KEY = "q0Wr6XuB9o6tx0JQ1yq0mZ2pYp1bS8Z1m5e9nQG7Zx4="
# Seconds an SDK client in a test waits on a silent peer (the SDKs' own default is 600).
CLIENT_TIMEOUT_S = 30.0
