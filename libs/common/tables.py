"""What every service's schema shares: its plumbing tables and its timestamp columns.

Each service's `models.py` defines its own tables and, with `common_tables(metadata, SCHEMA)`,
the four its `ServiceRuntime` runs on. The definitions are those the services' first
migrations created: change one only with a migration in every service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, Table, func

from libs.common.events.consumer import inbox_table
from libs.common.events.outbox import outbox_table
from libs.common.http import idempotency_table
from libs.common.jobs import job_runs_table


@dataclass(frozen=True)
class CommonTables:
    """The plumbing tables of one service's schema."""

    outbox: Table  # events written in the change's transaction, published by the relay
    inbox: Table  # `processed_events`: the events each durable consumer has applied
    idempotency: Table  # `idempotency_keys`: the stored answers by Idempotency-Key
    job_runs: Table  # the ticks of periodic jobs, claimed once across replicas


def common_tables(metadata: MetaData, schema: str) -> CommonTables:
    """Define the schema's outbox, inbox, idempotency keys and job runs on `metadata`."""
    return CommonTables(
        outbox=outbox_table(metadata, schema),
        inbox=inbox_table(metadata, schema),
        idempotency=idempotency_table(metadata, schema),
        job_runs=job_runs_table(metadata, schema),
    )


def now_column() -> Column[datetime]:
    """`timestamptz NOT NULL DEFAULT now()`: the time the transaction started."""
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


def clock_column() -> Column[datetime]:
    """`timestamptz NOT NULL DEFAULT clock_timestamp()`: the time of the insert itself, not
    of the transaction's start."""
    return Column(DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp())
