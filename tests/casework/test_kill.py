"""The casework service as a real process, SIGKILLed while registry events stream in: after
a restart every child is projected, every reintegration has exactly its four follow-ups, and
no event was applied twice.

It runs on a NATS server and a database of its own, so that the in-process app of the other
tests (same durable consumer names) cannot take any of these events.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from pathlib import Path

import nats
from sqlalchemy import text

from deploy.local.infra import EmbeddedNats, create_database, drop_database, free_port
from deploy.local.supervisor import Supervisor
from libs.common.db import Database
from libs.common.events import CloudEvent
from tests.casework.conftest import registered, reintegration
from tests.support import migrate

CHILDREN = 60
COMMUNE, VILLAGE = "120101", "12010101"


def registry_history(child_id: str) -> list[CloudEvent]:
    """A child registered in a residential institution, then reintegrated (two events)."""
    place = {"commune": COMMUNE, "village": VILLAGE, "owner_org": "moswvy"}
    first = registered(child_id=child_id, care_setting="residential_institution", **place)
    return [first, *reintegration(date(2026, 5, 31), child_id=child_id, version=2, **place)]


async def scalar(db: Database, sql: str) -> int:
    async with db.transaction() as conn:
        return int(await conn.scalar(text(sql)) or 0)


async def test_killed_midway_it_resumes_and_applies_every_event_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    broker = EmbeddedNats(tmp_path / "nats", port=free_port())
    await asyncio.to_thread(broker.start)
    db_name = f"komar_kill_{uuid.uuid4().hex[:8]}"
    url = await asyncio.to_thread(create_database, pg_url, db_name)
    db = Database(url, pool_size=2, max_overflow=0)
    supervisor = Supervisor(tmp_path / "log")
    nc = None
    try:
        await migrate(url, "services.casework")
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "NATS_URL": broker.url,
            "KOMAR_CASEWORK_PORT": str(port),
            "KOMAR_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",  # no token is checked
            "KOMAR_LOG_LEVEL": "warning",
        }
        await asyncio.to_thread(
            supervisor.start, "casework", "services.casework", env=env, port=port
        )

        children = [str(uuid.uuid4()) for _ in range(CHILDREN)]
        stream: list[tuple[CloudEvent, str]] = []
        for n, child_id in enumerate(children):
            events = registry_history(child_id)
            stream += [(e, e.id) for e in events]
            if n % 2 == 0:  # delivered twice: the same event under another message id
                stream.append((events[2], f"copy-{events[2].id}"))
        distinct = {e.id for e, _ in stream}

        nc = await nats.connect(broker.url)
        js = nc.jetstream()

        async def publish_all() -> None:
            for i in range(0, len(stream), 10):
                for event, msg_id in stream[i : i + 10]:
                    await js.publish(
                        event.type,
                        event.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": msg_id},
                    )
                await asyncio.sleep(0.03)

        publisher = asyncio.create_task(publish_all())
        deadline = asyncio.get_running_loop().time() + 60
        while await scalar(db, "SELECT count(*) FROM casework.processed_events") < 40:
            assert asyncio.get_running_loop().time() < deadline, supervisor.log_tail("casework")
            await asyncio.sleep(0.01)
        await asyncio.to_thread(supervisor.kill, "casework")
        applied_at_kill = await scalar(db, "SELECT count(*) FROM casework.processed_events")
        await publisher
        assert 0 < applied_at_kill < len(distinct), "the kill did not land midway"

        await asyncio.to_thread(supervisor.restart, "casework")
        deadline = asyncio.get_running_loop().time() + 90
        while await scalar(db, "SELECT count(*) FROM casework.processed_events") < len(distinct):
            assert asyncio.get_running_loop().time() < deadline, supervisor.log_tail("casework")
            await asyncio.sleep(0.1)

        async with db.transaction() as conn:
            processed = set(
                (await conn.execute(text("SELECT event_id::text FROM casework.processed_events")))
                .scalars()
                .all()
            )
            rows = (await conn.execute(text("SELECT * FROM casework.children"))).mappings().all()
            followups = (
                await conn.execute(
                    text(
                        "SELECT child_id::text, array_agg(month ORDER BY month) AS months"
                        " FROM casework.followups GROUP BY child_id"
                    )
                )
            ).all()
        assert processed == distinct
        assert {str(r["id"]) for r in rows} == set(children)
        for row in rows:
            assert (row["version"], row["care_setting"]) == (2, "family")
            assert row["reintegrated_on"] == date(2026, 5, 31)
        assert {c: list(m) for c, m in followups} == {c: [1, 3, 6, 12] for c in children}
        assert supervisor.exited() == []  # the restarted process is still up
    finally:
        await asyncio.to_thread(supervisor.stop_all)
        if nc is not None:
            await nc.close()
        await db.close()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(drop_database, pg_url, db_name)
