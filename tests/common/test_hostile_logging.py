"""A statement that fails with personal data in it leaves none in any log line or answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from libs.common.app import install_common
from libs.common.db import Database
from tests.support import production_logging as support_logging

NAME = "Sokha Chan"
PHONE = "+855 12 345 678"


async def test_a_failing_statement_never_quotes_its_parameters(pg_url: str) -> None:
    db = Database(pg_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(DBAPIError) as failed:
            async with db.transaction() as conn:
                # PostgreSQL refuses NUL in text: the error a NUL in a name used to cause.
                await conn.execute(text("SELECT :who::text"), {"who": f"{NAME}\x00{PHONE}"})
    finally:
        await db.close()
    assert NAME not in str(failed.value)
    assert PHONE not in str(failed.value)


@pytest.fixture
def production_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The processes' logging for one test (tests.support.production_logging)."""
    with support_logging("hostile-test"):
        yield


@pytest.mark.usefixtures("production_logging")
async def test_the_error_log_of_a_failing_request_holds_no_personal_data(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database(pg_url, pool_size=1, max_overflow=0)
    app = FastAPI()
    install_common(app, service="hostile-test", max_body_bytes=1 << 20, ready=None)

    @app.get("/fails")
    async def fails() -> None:
        async with db.transaction() as conn:
            await conn.execute(text("SELECT CAST(:phone AS integer)"), {"phone": f"{NAME} {PHONE}"})

    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/fails")
    finally:
        await db.close()
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert answer.status_code == 500, out
    assert answer.headers.get("content-type") == "application/problem+json", (answer.headers, out)
    assert NAME not in answer.text
    assert PHONE not in answer.text
    # The failure is logged, as what and where, with its SQLSTATE (the driver's own error
    # quotes the value it could not send as an integer) …
    failed = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and '"request.failed"' in line
    ]
    assert failed, out
    assert failed[0]["sqlstate"].startswith("22")  # data exception
    assert "DBAPIError" in failed[0]["error"]
    # … and nothing of what the statement carried, in any line.
    assert NAME not in out
    assert PHONE not in out
    assert "12 345" not in out
