"""Prometheus metrics of the event plumbing, the periodic jobs and group commits.

Each process exposes its own at /metrics; label sets never name the replica, so the sum over
a service's replicas is the service's total. Callers bind labels once (`.labels(...)`) and
keep the child, so counting costs one increment.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_APPLIED = Counter(
    "komar_events_applied_total",
    "Events a durable consumer applied (committed with their inbox row)",
    ["service", "consumer", "type"],
)
EVENTS_DUPLICATE = Counter(
    "komar_events_duplicate_total",
    "Events a durable consumer skipped because its inbox already held their id",
    ["service", "consumer"],
)
OUTBOX_PUBLISHED = Counter(
    "komar_outbox_published_total",
    "Outbox rows the relay published and marked as published",
    ["service"],
)
OUTBOX_DUPLICATE_ACKS = Counter(
    "komar_outbox_duplicate_acks_total",
    "Publishes JetStream acknowledged as duplicates (the message id was already stored)",
    ["service"],
)
JOB_RUNS = Counter(
    "komar_job_runs_total",
    "Periodic job runs of this process (a tick claimed by another replica is not counted)",
    ["service", "job"],
)
GROUP_COMMIT_SIZE = Histogram(
    "komar_group_commit_size",
    "Items written per group commit (libs.common.batching): near 1 when idle, more under load",
    ["group"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
