"""Visits: bounded dates, the overdue flag set once by the job and cleared by a visit,
the due list, and notes that never leave the service."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from tests.casework.conftest import World, casework_events, today, until


async def test_visit_dates(world: World) -> None:
    child = await world.child()
    await world.visit(child, on=today() + timedelta(days=1), expect=422)
    r = await world.visit(child, next_visit_on=today().isoformat(), expect=422)
    assert r.headers["content-type"].startswith("application/problem+json")
    await world.visit(child, on=today() - timedelta(days=1), next_visit_on=today().isoformat())
    case = await world.case(child)
    assert case["next_visit_on"] == today().isoformat()
    assert case["overdue"] is False
    assert case["last_visit"]["date"] == (today() - timedelta(days=1)).isoformat()
    # A visit recorded late, dated before the latest, changes nothing of the schedule.
    await world.visit(
        child,
        on=today() - timedelta(days=5),
        next_visit_on=(today() + timedelta(days=9)).isoformat(),
    )
    case = await world.case(child)
    assert case["next_visit_on"] == today().isoformat()
    assert case["last_visit"]["date"] == (today() - timedelta(days=1)).isoformat()


async def test_a_missed_visit_is_flagged_once_and_a_visit_clears_it(world: World) -> None:
    child = await world.child()
    worker = await world.worker()
    await world.assign(child, worker["id"])
    due = today() - timedelta(days=3)
    await world.visit(child, on=today() - timedelta(days=10), next_visit_on=due.isoformat())

    async def flagged() -> dict | None:
        case = await world.case(child)
        return case if case["overdue"] else None

    case = await until(flagged, what="the overdue flag")
    assert case["overdue_due_on"] == due.isoformat()
    r = await world.api.get(
        "/v1/casework/visits/due", params={"overdue": "true"}, headers=world.headers()
    )
    assert [c["child_id"] for c in r.json()["items"]] == [child]

    async def overdue_events() -> list[dict]:
        return [
            e
            for e in await casework_events(world.nats_url, "casework.visit.>")
            if e["subject"] == child and "overdue" in e["type"]
        ]

    await until(overdue_events)
    # Several more ticks of the job: still one event.
    import asyncio

    await asyncio.sleep(1.5)
    [event] = await overdue_events()
    assert event["type"] == "casework.visit.overdue.v1"
    assert event["data"] == {
        "child_id": child,
        "commune_code": world.place.commune,
        "worker_id": worker["id"],
        "due_on": due.isoformat(),
        "overdue": True,
        "at": today().isoformat(),
    }
    # A visit clears the flag, with its event.
    later = (today() + timedelta(days=30)).isoformat()
    await world.visit(child, next_visit_on=later)
    case = await world.case(child)
    assert case["overdue"] is False
    assert case["next_visit_on"] == later
    cleared = await until(lambda: _two(overdue_events))
    assert cleared[1]["type"] == "casework.visit.overdue_cleared.v1"
    assert cleared[1]["data"]["overdue"] is False
    r = await world.api.get(
        "/v1/casework/visits/due", params={"overdue": "false"}, headers=world.headers()
    )
    assert [c["child_id"] for c in r.json()["items"]] == [child]
    r = await world.api.get(
        "/v1/casework/visits/due", params={"overdue": "true"}, headers=world.headers()
    )
    assert r.json()["items"] == []


async def _two(events):  # type: ignore[no-untyped-def]
    found = await events()
    return found if len(found) >= 2 else None


async def test_notes_never_leave_the_service(world: World, capfd) -> None:  # type: ignore[no-untyped-def]
    marker = f"NOTE-{uuid.uuid4().hex}"
    child = await world.child()
    r = await world.visit(child, notes=f"Mother said {marker} about the landlord.\nSecond line.")
    visit = r.json()
    assert marker in visit["notes"]
    r = await world.api.get(f"/v1/casework/visits/{visit['id']}", headers=world.headers())
    assert marker in r.json()["notes"]
    r = await world.api.get(
        "/v1/casework/visits", params={"child_id": child}, headers=world.headers()
    )
    assert [v["id"] for v in r.json()["items"]] == [visit["id"]]
    # Refused notes are not echoed either.
    r = await world.visit(child, notes=f"{marker}\x00", expect=422)
    assert marker not in r.text
    r = await world.visit(child, notes=marker + "x" * 4000, expect=422)
    assert marker not in r.text

    async def recorded() -> list[dict]:
        return [
            e
            for e in await casework_events(world.nats_url, "casework.visit.recorded.v1")
            if e["subject"] == visit["id"]
        ]

    [event] = await until(recorded)
    assert "notes" not in event["data"]
    every = await casework_events(world.nats_url)
    assert marker not in str(every)
    out, err = capfd.readouterr()
    assert marker not in out
    assert marker not in err
    # In no table of any other schema.
    async with world.db.transaction() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema NOT IN ('casework', 'pg_catalog', 'information_schema')"
                    " AND table_type = 'BASE TABLE'"
                )
            )
        ).all()
        for schema, table in tables:
            hit = await conn.execute(
                text(f'SELECT 1 FROM "{schema}"."{table}" t WHERE t::text LIKE :m LIMIT 1'),
                {"m": f"%{marker}%"},
            )
            assert hit.first() is None, f"{schema}.{table}"
        outbox = await conn.execute(
            text("SELECT 1 FROM casework.outbox WHERE payload::text LIKE :m"), {"m": f"%{marker}%"}
        )
        assert outbox.first() is None


async def test_idempotent_visit(world: World) -> None:
    child = await world.child()
    h = {**world.headers(sub="visitor-1"), "Idempotency-Key": uuid.uuid4().hex}
    body = {"child_id": child, "date": today().isoformat(), "kind": "home_visit", "outcome": "met"}
    first = await world.api.post("/v1/casework/visits", json=body, headers=h)
    again = await world.api.post("/v1/casework/visits", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    r = await world.api.get(
        "/v1/casework/visits", params={"child_id": child}, headers=world.headers()
    )
    assert len(r.json()["items"]) == 1
