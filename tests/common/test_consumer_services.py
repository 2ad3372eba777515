"""The services' own consumers (referrals and funds keep children, the registry and funds
keep referrals) with a backlog of two versions per record (registered and updated, created
and accepted; a batch applies only each record's newest): each event into the inbox once.
Prints (never asserts) events/s of each."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from deploy.local.infra import create_database, drop_database
from libs.common import places
from libs.common.db import Database
from libs.common.events import CloudEvent
from libs.common.events.bus import EventBus
from libs.common.events.consumer import DurableConsumer, Handlers
from services.funds import handlers as funds_handlers
from services.funds import models as funds_models
from services.referrals import handlers as referrals_handlers
from services.referrals import models as referrals_models
from services.registry import handlers as registry_handlers
from services.registry import models as registry_models
from tests.indicators.conftest import child_event, referral_event
from tests.support import migrate


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    name = f"consumers_{secrets.token_hex(4)}"
    url = create_database(pg_url, name)
    for package in ("services.registry", "services.referrals", "services.funds"):
        await migrate(url, package)
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()
        drop_database(pg_url, name)


@pytest.fixture
def prefix() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}"


@contextlib.asynccontextmanager
async def backlog_bus(nats_url: str, stream: str, subject: str) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_url, "consumer-services-test", {stream: [subject]})
    bus.start()
    await bus.wait_ready(20)
    try:
        yield bus
    finally:
        await bus.close()


def children(n: int, tag: str) -> list[CloudEvent]:
    communes = [c for c in places.all_communes() if c[:2] == "12"]
    out: list[CloudEvent] = []
    for i in range(n):
        cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-{i}"))
        common: dict[str, Any] = {
            "commune": communes[i % len(communes)],
            "sex": "female",
            "birth": "2018-03",
            "registered_on": "2026-01-05",
        }
        out.append(child_event("registered", cid, version=1, when="2026-01-05T03:00:00Z", **common))
        out.append(
            child_event(
                "updated", cid, version=2, risk="high", when="2026-01-06T03:00:00Z", **common
            )
        )
    return out


def referrals(n: int, tag: str) -> list[CloudEvent]:
    out: list[CloudEvent] = []
    for i in range(n):
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-ref-{i}"))
        cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-child-{i}"))
        for version, verb in enumerate(("created", "accepted"), start=1):
            out.append(
                referral_event(
                    verb,
                    rid,
                    child_id=cid,
                    commune="120101",
                    service_type="health",
                    version=version,
                    when="2026-01-05T03:00:00Z",
                )
            )
    return out


async def rows(db: Database, table: Table) -> int:
    async with db.transaction() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def measure(
    db: Database,
    nats_url: str,
    *,
    name: str,
    inbox: Table,
    handlers: Handlers,
    events: list[CloudEvent],
    prefix: str,
) -> None:
    """Publish a backlog (each event under a test subject), then apply it; print events/s
    and check each event is in the inbox once."""
    stream = f"{prefix}{name.replace('-', '').upper()}"[:30]
    subject = f"{stream.lower()}.>"
    renamed = {f"{stream.lower()}.{t}": h for t, h in handlers.items()}
    async with backlog_bus(nats_url, stream, subject) as bus:
        for e in events:
            moved = e.model_copy(update={"type": f"{stream.lower()}.{e.type}"})
            await bus.js.publish(
                moved.type, moved.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id}
            )
        before = await rows(db, inbox)
        consumer = DurableConsumer(
            db,
            bus,
            inbox,
            durable=f"{name}-{prefix}",
            stream=stream,
            subject=subject,
            handlers=renamed,
        )
        started = time.monotonic()
        consumer.start()
        try:
            deadline = started + 120
            while consumer.last_sequence < len(events):
                assert time.monotonic() < deadline, consumer.last_sequence
                await asyncio.sleep(0.02)
            seconds = time.monotonic() - started
        finally:
            await consumer.stop()
        print(  # the figure is the point; never asserted
            f"\n{name} backlog (2 versions per record): {len(events)} events in {seconds:.2f} s:"
            f" {len(events) / seconds:.0f} events/s (2 shared cores: noisy)"
        )
        assert await rows(db, inbox) == before + len(events)


async def test_referrals_keep_children(db: Database, nats_url: str, prefix: str) -> None:
    await measure(
        db,
        nats_url,
        name="referrals-children",
        inbox=referrals_models.common.inbox,
        handlers=referrals_handlers.CHILD_HANDLERS,
        events=children(1500, prefix),
        prefix=prefix,
    )


async def test_funds_keep_children(db: Database, nats_url: str, prefix: str) -> None:
    await measure(
        db,
        nats_url,
        name="funds-children",
        inbox=funds_models.common.inbox,
        handlers=funds_handlers.CHILD_HANDLERS,
        events=children(1500, prefix),
        prefix=prefix,
    )


async def test_funds_keep_referral_shares(db: Database, nats_url: str, prefix: str) -> None:
    await measure(
        db,
        nats_url,
        name="funds-referral-shares",
        inbox=funds_models.common.inbox,
        handlers=funds_handlers.REFERRAL_HANDLERS,
        events=referrals(1500, prefix),
        prefix=prefix,
    )


async def test_the_registry_keeps_referral_access(db: Database, nats_url: str, prefix: str) -> None:
    await measure(
        db,
        nats_url,
        name="registry-referrals",
        inbox=registry_models.common.inbox,
        handlers=registry_handlers.REFERRAL_HANDLERS,
        events=referrals(1500, prefix),
        prefix=prefix,
    )
