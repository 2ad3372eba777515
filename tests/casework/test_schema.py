"""The casework migration makes exactly what the models declare."""

from __future__ import annotations

from fastapi import FastAPI

from services.casework import models
from tests.support import migration_drift


async def test_the_migration_makes_what_the_models_declare(
    pg_url: str, casework_app: FastAPI
) -> None:
    assert await migration_drift(pg_url, models.SCHEMA, models.metadata) == []
