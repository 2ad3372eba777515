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
EVENTS_LAG = Histogram(
    "komar_events_lag_seconds",
    "From an event's `time` (set by its producer's use case) to its application committed by a"
    " durable consumer, one observation per applied event",
    ["service", "consumer"],
    buckets=(
        0.001,
        0.002,
        0.005,
        0.01,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1.0,
        1.5,
        2.0,
        3.0,
        5.0,
        7.5,
        10.0,
        15.0,
        20.0,
        30.0,
    ),
)
