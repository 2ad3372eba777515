"""The registry's migrations make exactly what its models declare (care_setting, workers'
accounts and every table before them)."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry import models
from tests.support import migration_drift

# Declared by migration 0004 only (models.py says so): an index on an expression with an
# operator class, which the models' comparison cannot state.
MIGRATION_ONLY = {"ix_registry_children_place_key"}


async def test_the_migrations_make_what_the_models_declare(
    pg_url: str, registry_app: FastAPI
) -> None:
    drift = await migration_drift(pg_url, models.SCHEMA, models.metadata)
    assert [d for d in drift if not (d[0] == "remove_index" and d[1].name in MIGRATION_ONLY)] == []
