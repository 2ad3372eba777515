"""The bench's bulk loader: a synthetic population's events on the streams, loaded by replay."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest

from deploy.local.infra import EmbeddedNats
from libs.common.db import Database
from libs.common.settings import Settings
from services.indicators import dates, jetstream, seed
from services.indicators.store import bookkeeping, counting
from tests.support import migrate

pytestmark = pytest.mark.asyncio


async def test_seeded_events_load_into_the_aggregates(own_db: str, own_nats: EmbeddedNats) -> None:
    await migrate(own_db, "services.indicators")
    now = datetime.now(UTC)
    events = list(seed.population(300, months=6, seed=5, now=now))
    assert all(e.time <= now for e in events)
    summary = await seed.seed(
        Settings(database_url=own_db, nats_url=own_nats.url),
        300,
        months=6,
        seed_value=5,
        rebuild=True,
    )
    assert summary.events == len(events)
    registered = sum(1 for e in events if e.type == "registry.child.registered.v1")
    closed = sum(1 for e in events if e.type == "registry.child.closed.v1")
    db = Database(own_db, pool_size=1, max_overflow=0)
    try:
        async with db.transaction() as conn:
            target = await bookkeeping.active_target(conn)
            cells = await counting.nonzero_cells(conn, target.generation)
    finally:
        await db.close()
    assert target.generation == 2
    monthly = [k for k in cells if k[0] == "CP_CHILD_REG" and len(k[1]) == 6 and k[1].isdigit()]
    assert sum(cells[k] for k in monthly) == registered == 300
    this_month = dates.month_code(dates.current_month(now))
    open_now = sum(v for k, v in cells.items() if k[0] == "CP_CASE_OPEN" and k[1] == this_month)
    assert open_now == registered - closed
    # casework: every visit counted once in its month
    visits = sum(1 for e in events if e.type == "casework.visit.recorded.v1")
    assert visits > 0
    monthly_visits = [k for k in cells if k[0] == "CP_VISITS" and k[1].isdigit() and len(k[1]) == 6]
    assert sum(cells[k] for k in monthly_visits) == visits
    # the service's consumers start after the replayed events: nothing left for them
    nc = await nats.connect(own_nats.url)
    try:
        js = nc.jetstream()
        for stream, (durable, _) in jetstream.CONSUMERS.items():
            info = await js.consumer_info(stream, durable)
            assert info.num_pending == 0
            assert (await jetstream.stream_status(js, stream, durable))["lag"] == 0
    finally:
        await nc.close()
