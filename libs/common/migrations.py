"""Alembic per service: one schema, its own version table, versions in the service."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql

from libs.common.db import async_url

ENV_DIR = Path(__file__).parent / "alembic"


def alembic_config(database_url: str, schema: str, metadata: MetaData, versions: Path) -> Config:
    """An Alembic config for one service's schema."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ENV_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    cfg.attributes["schema"] = schema
    cfg.attributes["metadata"] = metadata
    return cfg


def upgrade(database_url: str, schema: str, metadata: MetaData, versions: Path) -> None:
    """Bring the schema to the newest version."""
    command.upgrade(alembic_config(database_url, schema, metadata, versions), "head")


def revision(
    database_url: str, schema: str, metadata: MetaData, versions: Path, message: str
) -> None:
    """Autogenerate a new version from the models (for developers)."""
    cfg = alembic_config(database_url, schema, metadata, versions)
    command.revision(cfg, message=message, autogenerate=True, version_path=str(versions))


# ---------------------------------------------------------------- steps every service takes


def stamp_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    """`timestamptz NOT NULL DEFAULT now()`, as tables.now_column declares it."""
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def create_common_tables(schema: str) -> None:
    """The tables libs.common.tables.common_tables declares, as a new service's first
    migration makes them: idempotency keys, the outbox with its feed positions, the inbox
    (`processed_events`) and job runs."""
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        stamp_column("created_at"),
        sa.PrimaryKeyConstraint("client_id", "key"),
        schema=schema,
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        stamp_column("created_at"),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        schema=schema,
    )
    op.create_index(
        f"ix_{schema}_outbox_unpublished",
        "outbox",
        ["seq"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    add_feed_positions(schema)
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("consumer", sa.String(length=100), nullable=False),
        stamp_column("processed_at"),
        sa.PrimaryKeyConstraint("event_id"),
        schema=schema,
    )
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("last_tick", sa.BigInteger(), nullable=False),
        stamp_column("last_run_at"),
        sa.PrimaryKeyConstraint("job"),
        schema=schema,
    )


def add_feed_positions(schema: str) -> None:
    """The outbox's `position` in the change feed (libs.common.feeds): the rows published
    before it existed take the first positions in `seq` order; the others get theirs when
    the relay first claims them."""
    op.add_column("outbox", sa.Column("position", sa.BigInteger()), schema=schema)
    op.execute(
        f'UPDATE "{schema}".outbox AS o SET position = n.position'
        " FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS position"
        f' FROM "{schema}".outbox WHERE published_at IS NOT NULL) AS n WHERE o.seq = n.seq'
    )
    op.create_index(
        f"ix_{schema}_outbox_position",
        "outbox",
        ["position"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("position IS NOT NULL"),
    )
    _index_unsettled(schema, "published_at IS NULL OR position IS NULL")


def drop_feed_positions(schema: str) -> None:
    """Undo `add_feed_positions`."""
    _index_unsettled(schema, "published_at IS NULL")
    op.drop_index(f"ix_{schema}_outbox_position", table_name="outbox", schema=schema)
    op.drop_column("outbox", "position", schema=schema)


def _index_unsettled(schema: str, predicate: str) -> None:
    """The relay's index of the rows it has yet to settle, over `predicate`."""
    name = f"ix_{schema}_outbox_unpublished"
    op.drop_index(name, table_name="outbox", schema=schema)
    op.create_index(name, "outbox", ["seq"], schema=schema, postgresql_where=sa.text(predicate))
