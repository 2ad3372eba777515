"""The bare ceiling: FastAPI + an asyncpg pool, one INSERT or one SELECT per request.

`python -m bench.ceiling` serves on 127.0.0.1:$BENCH_CEILING_PORT against $DATABASE_URL.
No auth, outbox, audit or validation beyond "the body is a JSON object": the fastest a
Komar-shaped service could be on this machine, so the real ones are measured against it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.children (
    id uuid PRIMARY KEY,
    given_name text NOT NULL,
    family_name text NOT NULL,
    commune_code text,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
INSERT_SQL = """
INSERT INTO bench.children (id, given_name, family_name, commune_code, body)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, given_name, family_name, commune_code, body, created_at
"""
SELECT_SQL = """
SELECT id, given_name, family_name, commune_code, body, created_at
FROM bench.children WHERE id = $1
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Encode and decode jsonb as Python objects."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _out(row: asyncpg.Record) -> dict[str, Any]:
    """A row as JSON-ready data."""
    return {
        "id": str(row["id"]),
        "given_name": row["given_name"],
        "family_name": row["family_name"],
        "commune_code": row["commune_code"],
        "body": row["body"],
        "created_at": row["created_at"].isoformat(),
    }


def create_app(database_url: str, pool_size: int = 20) -> FastAPI:
    """The ceiling ASGI app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            database_url, min_size=pool_size, max_size=pool_size, init=_init_connection
        )
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA_SQL)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="bench ceiling", lifespan=lifespan, openapi_url=None)

    @app.get("/readyz")
    async def readyz(request: Request) -> dict[str, str]:
        """Ready once the pool answers."""
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    @app.post("/children", status_code=201)
    async def create(request: Request, body: dict[str, Any] = Body(...)) -> Response:
        """Insert one row and answer it."""
        commune = body.get("commune_code") or str(body.get("village_code", ""))[:6] or None
        row = await request.app.state.pool.fetchrow(
            INSERT_SQL,
            uuid.uuid4(),
            str(body.get("given_name", "")),
            str(body.get("family_name", "")),
            commune,
            body,
        )
        doc = _out(row)
        return JSONResponse(doc, 201, headers={"Location": f"/children/{doc['id']}"})

    @app.get("/children/{child_id}")
    async def read(child_id: uuid.UUID, request: Request) -> Response:
        """Read one row by id."""
        row = await request.app.state.pool.fetchrow(SELECT_SQL, child_id)
        if row is None:
            return JSONResponse({"detail": "not found"}, 404)
        return JSONResponse(_out(row))

    return app


def main() -> None:
    """Serve the ceiling app with uvicorn, configured like the services (no access log)."""
    uvicorn.run(
        create_app(os.environ["DATABASE_URL"]),
        host="127.0.0.1",
        port=int(os.environ["BENCH_CEILING_PORT"]),
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
