"""Case plans: the first written without If-Match, later ones with it (428, 412), read
with their ETag; the plan's event carries no action."""

from __future__ import annotations

import uuid

from tests.casework.conftest import World, casework_events, until


def _goals(action: str) -> dict:
    return {
        "goals": [
            {"domain": "education", "action": action, "due_on": "2027-03-01", "status": "open"},
            {"domain": "health", "action": "vaccinations", "due_on": "2027-01-15"},
        ]
    }


async def test_plans_with_if_match(world: World) -> None:
    child = await world.child()
    url = f"/v1/casework/children/{child}/plan"
    h = world.headers()
    assert (await world.api.get(url, headers=h)).status_code == 404
    secret_action = f"enrol at the commune school {uuid.uuid4().hex}"
    r = await world.api.put(url, json=_goals(secret_action), headers={**h, "If-None-Match": "*"})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == url
    r = await world.api.get(url, headers=h)
    assert r.status_code == 200
    assert r.headers["etag"] == '"1"'
    assert r.json()["goals"][1]["status"] == "open"

    changed = _goals("done")
    assert (await world.api.put(url, json=changed, headers=h)).status_code == 428
    r = await world.api.put(url, json=changed, headers={**h, "If-None-Match": "*"})
    assert r.status_code == 412
    r = await world.api.put(url, json=changed, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'
    r = await world.api.put(url, json=changed, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 412
    case = await world.case(child)
    assert case["plan"]["version"] == 2

    async def events() -> list[dict]:
        return [
            e
            for e in await casework_events(world.nats_url, "casework.plan.>")
            if e["subject"] == child
        ]

    found = await until(lambda: _at_least(events, 2))
    assert [e["data"]["version"] for e in found] == [1, 2]
    assert set(found[0]["data"]["goals"][0]) == {"domain", "status", "due_on"}
    assert secret_action not in str(found)


async def _at_least(events, n: int):  # type: ignore[no-untyped-def]
    found = await events()
    return found if len(found) >= n else None


async def test_plan_input_is_bounded(world: World) -> None:
    child = await world.child()
    url = f"/v1/casework/children/{child}/plan"
    for body in (
        {"goals": [_goals("x")["goals"][0]] * 51},
        {"goals": [{"domain": "magic", "action": "x", "due_on": "2027-01-01"}]},
        {"goals": [{"domain": "health", "action": "x" * 1001, "due_on": "2027-01-01"}]},
        {"goals": [{"domain": "health", "action": "a\x00b", "due_on": "2027-01-01"}]},
        {"goals": [], "extra": 1},
    ):
        r = await world.api.put(url, json=body, headers=world.headers())
        assert r.status_code == 422, r.text
    r = await world.api.put(
        f"/v1/casework/children/{uuid.uuid4()}/plan", json=_goals("x"), headers=world.headers()
    )
    assert r.status_code == 404
