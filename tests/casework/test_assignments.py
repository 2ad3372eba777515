"""Assignments: eligibility (409 naming the rule), the caseload under concurrency, the
government override, reassignment."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from tests.casework.conftest import World, casework_events, today, until


async def _rule(world: World, child: str, worker: dict, **extra: object) -> str:
    r = await world.assign(child, worker["id"], expect=409, **extra)
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["rule"])


async def test_a_worker_without_a_current_contract_cannot_take_cases(world: World) -> None:
    child = await world.child()
    past = today() - timedelta(days=400)
    expired = [
        {
            "org": "x",
            "start_on": past.isoformat(),
            "end_on": (today() - timedelta(days=1)).isoformat(),
            "monthly_fee_khr": 1,
        }
    ]
    worker = await world.worker(contracts=expired)
    assert await _rule(world, child, worker) == "no_current_contract"
    future = [
        {"org": "x", "start_on": (today() + timedelta(days=1)).isoformat(), "monthly_fee_khr": 1}
    ]
    worker = await world.worker(contracts=future)
    assert await _rule(world, child, worker) == "no_current_contract"
    worker = await world.worker(contracts=[])
    r = await world.assign(child, worker["id"], expect=409)
    assert "contract" in r.json()["detail"]


async def test_a_worker_without_basic_training_cannot_take_cases(world: World) -> None:
    child = await world.child()
    trained = [{"course": "case_management", "completed_on": "2025-01-01"}]
    worker = await world.worker(trainings=trained)
    r = await world.assign(child, worker["id"], expect=409)
    assert r.json()["rule"] == "no_basic_training"
    assert "training" in r.json()["detail"]


async def test_inactive_and_out_of_area_workers(world: World) -> None:
    child = await world.child()
    inactive = await world.worker(status="inactive")
    assert await _rule(world, child, inactive) == "worker_inactive"
    elsewhere = await world.worker(areas=[world.place.other_commune])
    assert await _rule(world, child, elsewhere) == "outside_worker_areas"


async def test_max_caseload_and_the_government_override(world: World) -> None:
    worker = await world.worker(max_caseload=1)
    first, second, third = [await world.child() for _ in range(3)]
    await world.assign(first, worker["id"])
    assert await _rule(world, second, worker) == "max_caseload"
    # A partner may not override (403), even for its own child.
    ngo = f"ngo-{uuid.uuid4().hex[:6]}"
    mine = await world.child(owner_org=ngo)
    r = await world.assign(
        mine,
        worker["id"],
        headers=world.partner(ngo),
        expect=403,
        override_justification="we know best",
    )
    # A government principal may, with a justification: recorded, visible, never in events.
    why = f"sibling group kept together {uuid.uuid4().hex}"
    r = await world.assign(second, worker["id"], override_justification=why)
    assignment = r.json()
    assert assignment["override"] == {"justification": why}
    got = await world.api.get(
        f"/v1/casework/assignments/{assignment['id']}", headers=world.headers()
    )
    assert got.json()["override"] == {"justification": why}
    r = await world.api.get(f"/v1/casework/workers/{worker['id']}", headers=world.headers())
    assert r.json()["caseload"] == 2
    # A justification when the worker has room is not an override.
    roomy = await world.worker()
    r = await world.assign(third, roomy["id"], override_justification="not needed")
    assert r.json()["override"] is None

    async def started() -> list[dict]:
        found = [
            e
            for e in await casework_events(world.nats_url, "casework.assignment.>")
            if e["subject"] == assignment["id"]
        ]
        return found

    [event] = await until(started, what="the override's event")
    assert event["data"]["override"] is True
    assert event["data"]["caseload"] == 2
    assert why not in str(event)


async def test_twenty_concurrent_assignments_leave_exactly_the_room(world: World) -> None:
    worker = await world.worker(max_caseload=5)
    children = [await world.child() for _ in range(20)]
    answers = await asyncio.gather(*(world.assign(c, worker["id"], expect=None) for c in children))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 5 + [409] * 15, [
        r.text for r in answers if r.status_code not in (201, 409)
    ]
    assert {r.json()["rule"] for r in answers if r.status_code == 409} == {"max_caseload"}
    r = await world.api.get(f"/v1/casework/workers/{worker['id']}", headers=world.headers())
    assert r.json()["caseload"] == 5
    r = await world.api.get(
        "/v1/casework/assignments",
        params={"worker_id": worker["id"], "status": "active"},
        headers=world.headers(),
    )
    assert len(r.json()["items"]) == 5


async def test_reassignment_ends_the_first_assignment(world: World) -> None:
    child = await world.child()
    one, two = await world.worker(), await world.worker()
    first = (await world.assign(child, one["id"])).json()
    await world.assign(child, one["id"], expect=409)  # already theirs
    second = (await world.assign(child, two["id"])).json()
    r = await world.api.get(f"/v1/casework/assignments/{first['id']}", headers=world.headers())
    ended = r.json()
    assert ended["status"] == "ended"
    assert ended["ended_on"] == today().isoformat()
    assert ended["version"] == 2
    case = await world.case(child)
    assert case["assignment"]["id"] == second["id"]
    r = await world.api.get(
        "/v1/casework/assignments", params={"child_id": child}, headers=world.headers()
    )
    # Ended and started in one transaction: the same updated_at, so either order.
    assert {a["id"]: a["status"] for a in r.json()["items"]} == {
        first["id"]: "ended",
        second["id"]: "active",
    }
    loads = {
        w["id"]: (
            await world.api.get(f"/v1/casework/workers/{w['id']}", headers=world.headers())
        ).json()["caseload"]
        for w in (one, two)
    }
    assert loads == {one["id"]: 0, two["id"]: 1}

    async def events() -> list[dict]:
        found = [
            (e["type"], e["data"]["caseload"])
            for e in await casework_events(world.nats_url, "casework.assignment.>")
            if e["data"]["child_id"] == child
        ]
        return found if len(found) == 3 else []

    assert await until(events) == [
        ("casework.assignment.started.v1", 1),
        ("casework.assignment.ended.v1", 0),
        ("casework.assignment.started.v1", 1),
    ]


async def test_assigning_an_unknown_or_closed_child(world: World) -> None:
    worker = await world.worker()
    await world.assign(str(uuid.uuid4()), worker["id"], expect=404)
    closed = await world.child(status="closed")
    r = await world.assign(closed, worker["id"], expect=409)
    assert r.json()["rule"] == "child_closed"
    child = await world.child()
    await world.assign(child, str(uuid.uuid4()), expect=404)


async def test_idempotency_key_replays_an_assignment(world: World) -> None:
    child = await world.child()
    worker = await world.worker()
    h = {**world.headers(sub="assigner-1"), "Idempotency-Key": uuid.uuid4().hex}
    body = {"child_id": child, "worker_id": worker["id"]}
    first = await world.api.post("/v1/casework/assignments", json=body, headers=h)
    again = await world.api.post("/v1/casework/assignments", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await world.api.post(
        "/v1/casework/assignments", json={**body, "override_justification": "x"}, headers=h
    )
    assert other.status_code == 422
