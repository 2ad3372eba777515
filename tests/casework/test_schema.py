"""The casework migration makes exactly what the models declare."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import async_url


async def test_the_migration_makes_what_the_models_declare(
    pg_url: str, casework_app: FastAPI
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from services.casework import models

    def ours(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or obj.schema == models.SCHEMA

    def named(name: Any, type_: str, parents: Any) -> bool:
        return type_ != "schema" or name == models.SCHEMA

    def diff(sync: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync,
            opts={
                "include_schemas": True,
                "include_object": ours,
                "include_name": named,
                "compare_type": True,
                "version_table_schema": models.SCHEMA,
            },
        )
        return list(compare_metadata(context, models.metadata))

    engine = create_async_engine(async_url(pg_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
