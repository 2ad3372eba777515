"""Alembic per service: one schema, its own version table, versions in the service."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

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
