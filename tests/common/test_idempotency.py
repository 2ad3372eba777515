"""Idempotency-Key: the first answer is replayed, another body refused, a key in use 409, an
expired answer forgotten; an answer stored by another request while this one worked wins."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.db import Database
from libs.common.errors import Conflict, Unprocessable
from libs.common.http import IDEMPOTENCY_TTL, Idempotency, Work, run_idempotent
from libs.common.tables import common_tables
from tests.support import schema_database

SCHEMA = "idempotency_test"
metadata = MetaData()
answers = common_tables(metadata, SCHEMA).idempotency
things = Table("things", metadata, Column("n", Integer, primary_key=True), schema=SCHEMA)
CLIENT = Principal(
    sub="sync-client", org="ngo", org_type="partner", scopes=frozenset(), areas=("12",)
)


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with schema_database(pg_url, SCHEMA, metadata) as database:
        yield database


def post(key: str, body: bytes) -> Request:
    """A POST with an Idempotency-Key and a body."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/things",
        "query_string": b"",
        "headers": [(b"idempotency-key", key.encode())],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def make(n: int) -> Work:
    """The work of a POST: one row of `things`, answered 201 with ETag, Location and a
    header that is not replayed."""

    async def work(conn: AsyncConnection) -> Response:
        await conn.execute(insert(things).values(n=n))
        return Response(
            f'{{"n":{n}}}'.encode(),
            status_code=201,
            headers={"ETag": f'"{n}"', "Location": f"/v1/things/{n}", "X-Trace": "once"},
            media_type="application/json",
        )

    return work


async def made(db: Database, *ns: int) -> list[int]:
    async with db.transaction() as conn:
        found = await conn.execute(select(things.c.n).where(things.c.n.in_(ns)))
        return sorted(found.scalars())


async def test_the_first_answer_is_replayed_and_another_body_refused(db: Database) -> None:
    key = uuid.uuid4().hex
    idempotency = Idempotency(answers)
    first = await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(1))
    again = await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(2))
    assert (first.status_code, first.body) == (again.status_code, again.body) == (201, b'{"n":1}')
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["etag"] == '"1"'
    assert again.headers["location"] == "/v1/things/1"
    assert again.headers["content-type"] == "application/json"
    assert "x-trace" not in again.headers
    with pytest.raises(Unprocessable):
        await run_idempotent(db, idempotency, post(key, b"{ }"), CLIENT, make(3))
    assert await made(db, 1, 2, 3) == [1]


async def test_a_key_another_transaction_holds_answers_409(db: Database) -> None:
    key = uuid.uuid4().hex
    idempotency = Idempotency(answers)
    digest = await idempotency.request_hash(post(key, b"{}"))
    async with db.transaction() as holder:
        assert await idempotency.begin(holder, CLIENT.sub, key, digest) is None
        with pytest.raises(Conflict):
            await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(11))
        # Another client's key of the same name is another key.
        other = dataclasses.replace(CLIENT, sub="other-client")
        answer = await run_idempotent(db, idempotency, post(key, b"{}"), other, make(12))
        assert answer.status_code == 201
    assert await made(db, 11, 12) == [12]


async def test_an_expired_answer_is_forgotten_and_the_request_runs_again(db: Database) -> None:
    key = uuid.uuid4().hex
    idempotency = Idempotency(answers)
    digest = await idempotency.request_hash(post(key, b"{}"))
    async with db.transaction() as conn:
        await conn.execute(
            insert(answers).values(
                client_id=CLIENT.sub,
                key=key,
                request_hash=digest,
                status=201,
                headers={},
                body=b"old",
                created_at=datetime.now(UTC) - IDEMPOTENCY_TTL - timedelta(minutes=1),
            )
        )
    answer = await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(21))
    assert (answer.status_code, answer.body) == (201, b'{"n":21}')
    assert "idempotent-replayed" not in answer.headers
    again = await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(22))
    assert (again.body, again.headers["idempotent-replayed"]) == (b'{"n":21}', "true")
    assert await made(db, 21, 22) == [21]


@pytest.mark.parametrize(("body", "replayed"), [(b"{}", True), (b"[]", False)])
async def test_an_answer_stored_while_the_work_ran_wins_and_the_work_is_undone(
    db: Database, body: bytes, replayed: bool
) -> None:
    """The lock's last holder may commit its answer after `begin` read and before the lock
    was taken: this request's work is then undone and the stored answer given, as `begin`
    would have given it."""
    key = uuid.uuid4().hex
    n = 31 if replayed else 32
    idempotency = Idempotency(answers)
    digest = await idempotency.request_hash(post(key, b"{}"))
    work = make(n)

    async def work_while_another_answers(conn: AsyncConnection) -> Response:
        answer = await work(conn)
        async with db.transaction() as other:
            await other.execute(
                insert(answers).values(
                    client_id=CLIENT.sub,
                    key=key,
                    request_hash=digest,
                    status=200,
                    headers={"etag": '"7"'},
                    body=b"first",
                )
            )
        return answer

    request = post(key, body)
    if replayed:
        answer = await run_idempotent(db, idempotency, request, CLIENT, work_while_another_answers)
        assert (answer.status_code, answer.body) == (200, b"first")
        assert answer.headers["etag"] == '"7"'
        assert answer.headers["idempotent-replayed"] == "true"
    else:
        with pytest.raises(Unprocessable):
            await run_idempotent(db, idempotency, request, CLIENT, work_while_another_answers)
    assert await made(db, n) == []


@pytest.mark.parametrize(("body", "replayed"), [(b"{}", True), (b"[]", False)])
async def test_work_refused_for_what_the_first_request_did_gives_that_answer(
    db: Database, body: bytes, replayed: bool
) -> None:
    """The same race, but this request's work fails because it sees the first request's
    effect (a record that already exists: 409): the first answer is given, not the 409; a
    different body is still 422."""
    key = uuid.uuid4().hex
    idempotency = Idempotency(answers)
    digest = await idempotency.request_hash(post(key, b"{}"))

    async def work_refused_after_another_answered(conn: AsyncConnection) -> Response:
        async with db.transaction() as other:
            await other.execute(
                insert(answers).values(
                    client_id=CLIENT.sub,
                    key=key,
                    request_hash=digest,
                    status=201,
                    headers={"etag": '"8"'},
                    body=b"first",
                )
            )
        raise Conflict("the thing exists already")

    request = post(key, body)
    if replayed:
        answer = await run_idempotent(
            db, idempotency, request, CLIENT, work_refused_after_another_answered
        )
        assert (answer.status_code, answer.body) == (201, b"first")
        assert answer.headers["idempotent-replayed"] == "true"
    else:
        with pytest.raises(Unprocessable):
            await run_idempotent(
                db, idempotency, request, CLIENT, work_refused_after_another_answered
            )


async def test_work_refused_without_a_stored_answer_is_that_refusal(db: Database) -> None:
    """A keyed request whose work fails, with no answer stored: its own error, nothing kept."""
    key = uuid.uuid4().hex
    idempotency = Idempotency(answers)

    async def refused(conn: AsyncConnection) -> Response:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, refused)
    answer = await run_idempotent(db, idempotency, post(key, b"{}"), CLIENT, make(41))
    assert answer.status_code == 201
    assert "idempotent-replayed" not in answer.headers
