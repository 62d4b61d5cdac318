"""The task engine: submit, transitions, billing, the poller with leases, stored results and
the webhook outbox, over one ``tasks`` table for every family (``store.tasks``)."""
