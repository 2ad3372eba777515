"""The referrals service as a real process, SIGKILLed while registry events stream in: after a
restart the projection is complete and no event was applied twice.

It runs on a NATS server and a database of its own, so that the in-process app of the other
tests (same durable consumer name) cannot take any of these events.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
from sqlalchemy import text

from deploy.local.infra import EmbeddedNats, create_database, drop_database, free_port
from deploy.local.supervisor import Supervisor
from libs.common.db import Database
from libs.common.events import CloudEvent
from tests.referrals.conftest import child_event
from tests.support import migrate

CHILDREN = 80
VILLAGES = ["12010101", "12010102", "12010103", "12010201", "12010202"]


def registry_history(child_id: str) -> list[CloudEvent]:
    """Five versions of one child, as the registry would publish them."""
    return [
        child_event(child_id, version=1, village=VILLAGES[0]),
        child_event(child_id, version=2, verb="updated", village=VILLAGES[1]),
        child_event(child_id, version=3, verb="closed", village=VILLAGES[1], status="closed"),
        child_event(child_id, version=4, verb="reopened", village=VILLAGES[1]),
        child_event(child_id, version=5, verb="updated", village=VILLAGES[3], consent=False),
    ]


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
        await migrate(url, "services.referrals")
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "NATS_URL": broker.url,
            "KOMAR_REFERRALS_PORT": str(port),
            "KOMAR_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",  # no token is checked
            "KOMAR_LOG_LEVEL": "warning",
        }
        await asyncio.to_thread(
            supervisor.start, "referrals", "services.referrals", env=env, port=port
        )

        histories = {str(uuid.uuid4()): None for _ in range(CHILDREN)}
        stream: list[tuple[CloudEvent, str]] = []
        for n, child_id in enumerate(histories):
            events = registry_history(child_id)
            if n % 4 == 0:  # out of order: the reopen arrives before the close
                events[2], events[3] = events[3], events[2]
            stream += [(e, e.id) for e in events]
            if n % 2 == 0:  # delivered twice: the same event under another message id
                stream.append((events[1], f"copy-{events[1].id}"))
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
        while await scalar(db, "SELECT count(*) FROM referrals.processed_events") < 40:
            assert asyncio.get_running_loop().time() < deadline, supervisor.log_tail("referrals")
            await asyncio.sleep(0.01)
        await asyncio.to_thread(supervisor.kill, "referrals")
        applied_at_kill = await scalar(db, "SELECT count(*) FROM referrals.processed_events")
        await publisher
        assert 0 < applied_at_kill < len(distinct), "the kill did not land midway"

        await asyncio.to_thread(supervisor.restart, "referrals")
        deadline = asyncio.get_running_loop().time() + 90
        while await scalar(db, "SELECT count(*) FROM referrals.processed_events") < len(distinct):
            assert asyncio.get_running_loop().time() < deadline, supervisor.log_tail("referrals")
            await asyncio.sleep(0.1)

        async with db.transaction() as conn:
            processed = set(
                (await conn.execute(text("SELECT event_id::text FROM referrals.processed_events")))
                .scalars()
                .all()
            )
            rows = (await conn.execute(text("SELECT * FROM referrals.children"))).mappings().all()
        assert processed == distinct
        assert {str(r["id"]) for r in rows} == set(histories)
        for row in rows:
            assert (row["version"], row["status"], row["village_code"]) == (5, "open", VILLAGES[3])
            assert row["commune_code"] == VILLAGES[3][:6]
            assert row["data_sharing_consent"] is False
        assert supervisor.exited() == []  # the restarted process is still up
    finally:
        await asyncio.to_thread(supervisor.stop_all)
        if nc is not None:
            await nc.close()
        await db.close()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(drop_database, pg_url, db_name)
