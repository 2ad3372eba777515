"""The services' own consumers (referrals and funds keep children, the registry and funds
keep referrals) with a backlog of two versions per record (registered and updated, created
and accepted; a batch applies only each record's newest) or of one: each event into the
inbox once. Prints (never asserts) events/s of each. And the batch forms (one statement per
batch) leave each record's newest version, never an older one, as one event at a time does."""

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

from deploy.local.infra import create_database
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
from tests.support import drop_test_database, migrate


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
        drop_test_database(pg_url, name)


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


def children(n: int, tag: str, versions: int = 2) -> list[CloudEvent]:
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
        if versions < 2:
            continue
        out.append(
            child_event(
                "updated", cid, version=2, risk="high", when="2026-01-06T03:00:00Z", **common
            )
        )
    return out


def referrals(n: int, tag: str, versions: int = 2) -> list[CloudEvent]:
    out: list[CloudEvent] = []
    for i in range(n):
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-ref-{i}"))
        cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-child-{i}"))
        for version, verb in enumerate(("created", "accepted")[:versions], start=1):
            out.append(health_referral(verb, rid, cid, version, "2026-01-05T03:00:00Z"))
    return out


def health_referral(verb: str, rid: str, cid: str, version: int, when: str) -> CloudEvent:
    """A referral of a Tonle Basak child to a health service."""
    return referral_event(
        verb,
        rid,
        child_id=cid,
        commune="120101",
        service_type="health",
        version=version,
        when=when,
    )


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
    per_record: int = 2,
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
            f"\n{name} backlog ({per_record} version(s) per record): {len(events)} events in"
            f" {seconds:.2f} s: {len(events) / seconds:.0f} events/s (2 shared cores: noisy)"
        )
        assert await rows(db, inbox) == before + len(events)


# Each service's consumer of a stream: its name, inbox, handlers and events of that stream.
CONSUMERS = [
    ("referrals-children", referrals_models.common.inbox, referrals_handlers.CHILD_HANDLERS),
    ("funds-children", funds_models.common.inbox, funds_handlers.CHILD_HANDLERS),
    ("funds-referral-shares", funds_models.common.inbox, funds_handlers.REFERRAL_HANDLERS),
    ("registry-referrals", registry_models.common.inbox, registry_handlers.REFERRAL_HANDLERS),
]


def events_of(name: str, n: int, prefix: str, versions: int) -> list[CloudEvent]:
    make = referrals if "referral" in name.split("-", 1)[1] else children
    return make(n, prefix, versions=versions)


@pytest.mark.parametrize(("name", "inbox", "handlers"), CONSUMERS)
@pytest.mark.parametrize(
    ("per_record", "records"), [(2, 1500), (1, 3000)], ids=["two-versions", "one-version"]
)
async def test_a_backlog(
    db: Database,
    nats_url: str,
    prefix: str,
    name: str,
    inbox: Table,
    handlers: Handlers,
    per_record: int,
    records: int,
) -> None:
    await measure(
        db,
        nats_url,
        name=name if per_record == 2 else f"{name}-1",
        inbox=inbox,
        handlers=handlers,
        events=events_of(name, records, prefix, versions=per_record),
        prefix=prefix,
        per_record=per_record,
    )


# ---------------------------------------------------------------- the batch forms' effect


def checked(handlers: Handlers, events: list[CloudEvent]) -> list[tuple[CloudEvent, Any]]:
    return [(e, handlers[e.type].check(e)) for e in events]


async def apply_run(db: Database, handlers: Handlers, events: list[CloudEvent]) -> None:
    """Apply a run of events as the consumer applies a batch: one call of the batch form."""
    batch = handlers[events[0].type].batch
    assert batch is not None  # the projection declares its batch form
    async with db.transaction() as conn:
        await batch(conn, checked(handlers, events))


async def apply_each(db: Database, handlers: Handlers, events: list[CloudEvent]) -> None:
    """Apply events one at a time, as the consumer does after a batch failed."""
    for e, data in checked(handlers, events):
        async with db.transaction() as conn:
            await handlers[e.type].apply(conn, e, data)


def child(cid: str, version: int, commune: str, status: str = "open") -> CloudEvent:
    verb = "registered" if version == 1 else "updated"
    return child_event(
        verb,
        cid,
        version=version,
        commune=commune,
        status=status,
        sex="male",
        birth="2019-04",
        registered_on="2026-01-05",
        when=f"2026-01-0{version}T03:00:00Z",
    )


@pytest.mark.parametrize(
    ("handlers", "table"),
    [
        (referrals_handlers.CHILD_HANDLERS, referrals_models.children),
        (funds_handlers.CHILD_HANDLERS, funds_models.children),
    ],
    ids=["referrals", "funds"],
)
async def test_a_batch_keeps_each_childs_newest_version_never_an_older_one(
    db: Database, handlers: Handlers, table: Table
) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    c1, c2, c3, c4 = [x for x in places.all_communes() if x[:2] == "12"][:4]
    await apply_run(db, handlers, [child(b, 5, c1)])
    # out of stream order, one record several times, one older than the stored version
    run = [child(a, 2, c2), child(b, 4, c2), child(a, 3, c3, "closed"), child(a, 1, c4)]
    await apply_run(db, handlers, [*run, child(c, 1, c4)])
    # one at a time (the consumer's fallback), a stale version changes nothing either
    await apply_each(db, handlers, [child(a, 2, c1), child(c, 2, c2)])
    async with db.transaction() as conn:
        found = await conn.execute(
            select(table.c.id, table.c.version, table.c.commune_code, table.c.status).where(
                table.c.id.in_([uuid.UUID(x) for x in (a, b, c)])
            )
        )
        stored = {str(r.id): (r.version, r.commune_code, r.status) for r in found}
    assert stored == {a: (3, c3, "closed"), b: (5, c1, "open"), c: (2, c2, "open")}


async def test_a_batch_of_referral_events_keeps_each_shares_newest_state(db: Database) -> None:
    handlers, table = funds_handlers.REFERRAL_HANDLERS, funds_models.referral_shares
    r1, r2, cid = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    def referral(rid: str, verb: str, version: int) -> CloudEvent:
        return health_referral(verb, rid, cid, version, f"2026-01-0{version}T03:00:00Z")

    await apply_run(db, handlers, [referral(r2, "accepted", 2)])
    completed = referral(r1, "completed", 3)
    run = [referral(r1, "created", 1), referral(r2, "created", 1), completed]
    await apply_run(db, handlers, [*run, referral(r1, "accepted", 2)])
    await apply_each(db, handlers, [referral(r2, "created", 1)])
    async with db.transaction() as conn:
        found = await conn.execute(
            select(table).where(table.c.referral_id.in_([uuid.UUID(r1), uuid.UUID(r2)]))
        )
        stored = {str(r.referral_id): r for r in found}
    assert (stored[r1].status, stored[r1].version) == ("completed", 3)
    assert stored[r1].completed_at == completed.time  # dated by its event
    assert (stored[r2].status, stored[r2].version, stored[r2].completed_at) == ("accepted", 2, None)
    assert {str(r.child_id) for r in stored.values()} == {cid}
    assert {r.org for r in stored.values()} == {"ngo-care"}
