"""The outbox's rows: events written in order, in one statement; a batch is published all at
once, and a publish that fails puts it and the rows after it back, with one more attempt for
it, and the rows before it stay published."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, select

from libs.common.db import Database
from libs.common.events import new_event
from libs.common.events.outbox import write_events
from libs.common.events.relay import OutboxRelay
from libs.common.tables import common_tables
from tests.common.test_relay import child_data
from tests.support import schema_database

SCHEMA = "outbox_rows_test"
metadata = MetaData()
outbox = common_tables(metadata, SCHEMA).outbox
TYPE = "registry.child.registered.v1"


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with schema_database(pg_url, SCHEMA, metadata) as database:
        yield database


class FailingBus:
    """Publishes (records) every message but the `fail_at`-th, which raises."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at = fail_at
        self.sent: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> object:
        if len(self.sent) + 1 == self.fail_at:
            self.fail_at = None
            raise TimeoutError("no ack")
        self.sent.append((subject, payload, msg_id))
        return object()


async def test_a_failed_publish_puts_it_and_the_rest_back(db: Database) -> None:
    events = [new_event("registry", TYPE, str(uuid.uuid4()), child_data(), "r") for _ in range(5)]
    async with db.transaction() as conn:
        await write_events(conn, outbox, events)
    async with db.transaction() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.seq))).mappings().all()
    assert [str(r["id"]) for r in rows] == [e.id for e in events]  # seq in event order
    assert [r["type"] for r in rows] == [TYPE] * 5
    assert [r["payload"] for r in rows] == [e.model_dump(mode="json") for e in events]

    bus = FailingBus(fail_at=3)
    relay = OutboxRelay(db, bus, outbox)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await relay.publish_batch()
    async with db.transaction() as conn:
        after = (await conn.execute(select(outbox).order_by(outbox.c.seq))).mappings().all()
    assert [r["published_at"] is not None for r in after] == [True, True, False, False, False]
    assert [r["attempts"] for r in after] == [0, 0, 1, 0, 0]
    assert await relay.pending() == 3

    assert await relay.publish_batch() == 3
    assert await relay.pending() == 0
    # A batch is sent all at once: the rows after the failed one were sent too, and go out
    # again with the same message ids (copies JetStream discards by Nats-Msg-Id).
    ids = [e.id for e in events]
    assert [msg_id for _, _, msg_id in bus.sent] == ids[:2] + ids[3:] + ids[2:]
    by_id = {e.id: e for e in events}
    for subject, payload, msg_id in bus.sent:
        assert subject == TYPE
        assert json.loads(payload) == by_id[msg_id].model_dump(mode="json")
    assert await relay.publish_batch() == 0
