"""The gateway's migrations make exactly what its models declare."""

from __future__ import annotations

from gateway import models
from tests.support import migration_drift


async def test_the_migrations_make_what_the_models_declare(gateway_db: str) -> None:
    assert await migration_drift(gateway_db, models.SCHEMA, models.metadata) == []
