"""Workers: register, read, change with If-Match, list with filters; who may see and
manage them; hostile input."""

from __future__ import annotations

import asyncio
import uuid

from tests.casework.conftest import World, casework_events, until, valid_worker

MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_register_read_and_patch_a_worker(world: World) -> None:
    username = f"U{uuid.uuid4().hex[:10]}"
    worker = await world.worker(username=username)
    assert worker["username"] == username.lower()

    async def upserted() -> list[dict]:  # type: ignore[type-arg]
        return [
            e
            for e in await casework_events(world.nats_url, "casework.worker.upserted.v1")
            if e["subject"] == worker["id"]
        ]

    [event] = await until(upserted)
    assert event["data"]["username"] == username.lower()
    assert event["data"]["trainings"] == [
        {
            "course": "child_protection_basics",
            "completed_on": worker["trainings"][0]["completed_on"],
        }
    ]
    for secret in ("Sophea", "Chan", "345 678", "Friends International"):
        assert secret not in str(event)
    assert worker["version"] == 1
    assert worker["caseload"] == 0
    assert worker["max_caseload"] == 25
    assert worker["trainings"][0]["provider"] == "Friends International"
    r = await world.api.get(f"/v1/casework/workers/{worker['id']}", headers=world.headers())
    assert r.status_code == 200
    assert r.headers["etag"] == '"1"'

    url = f"/v1/casework/workers/{worker['id']}"
    r = await world.api.patch(
        url, content=b'{"status": "inactive"}', headers={**world.headers(), **MERGE}
    )
    assert r.status_code == 428, r.text
    r = await world.api.patch(
        url,
        content=b'{"status": "inactive"}',
        headers={**world.headers(), **MERGE, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "inactive"
    assert r.headers["etag"] == '"2"'
    r = await world.api.patch(
        url, content=b'{"max_caseload": 3}', headers={**world.headers(), **MERGE, "If-Match": '"1"'}
    )
    assert r.status_code == 412, r.text
    r = await world.api.get(f"{url}/history", headers=world.headers())
    assert r.status_code == 200, r.text
    history = r.json()["items"]
    assert [(v["version"], v["changed"]) for v in history][1] == (2, ["status"])
    assert history[0]["version"] == 1
    assert "username" in history[0]["changed"]
    assert "Sophea" not in r.text
    r = await world.api.get(f"{url}/history", headers=world.partner("ngo-stranger"))
    assert r.status_code == 404


async def test_username_is_unique(world: World) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    await world.worker(username=name)
    await world.worker(username=name, expect=409)
    other = await world.worker()
    r = await world.api.patch(
        f"/v1/casework/workers/{other['id']}",
        content=f'{{"username": "{name}"}}'.encode(),
        headers={**world.headers(), **MERGE, "If-Match": '"1"'},
    )
    assert r.status_code == 409, r.text
    # At the same time: one gets the name, the others 409 (never a 500).
    race = f"u{uuid.uuid4().hex[:10]}"
    answers = await asyncio.gather(
        *(
            world.api.post(
                "/v1/casework/workers",
                json=valid_worker(world.place, username=race),
                headers=world.headers(),
            )
            for _ in range(6)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 5


async def test_who_may_register_a_worker(world: World) -> None:
    # Outside the principal's areas: 403.
    await world.worker(
        areas=[world.place.district],
        headers=world.headers(areas=[world.place.other_commune]),
        expect=403,
    )
    # A partner registers only its own organisation's workers.
    ngo = f"ngo-{uuid.uuid4().hex[:6]}"
    await world.worker(org="someone-else", headers=world.partner(ngo), expect=403)
    mine = await world.worker(org=ngo, headers=world.partner(ngo))
    assert mine["org_type"] == "partner"
    # Without casework:write: 403.
    await world.worker(headers=world.headers(scope="casework:read"), expect=403)


async def test_worker_visibility(world: World) -> None:
    worker = await world.worker(areas=[world.place.commune])
    url = f"/v1/casework/workers/{worker['id']}"
    # Areas covering the worker's (the province) or lying within them (a village) see it.
    for areas in ([world.place.province], [world.place.village], ["KH"]):
        r = await world.api.get(url, headers=world.headers(areas=areas))
        assert r.status_code == 200, (areas, r.text)
    # Another commune, another partner: 404, as if it did not exist.
    r = await world.api.get(url, headers=world.headers(areas=[world.place.other_commune]))
    assert r.status_code == 404
    r = await world.api.get(url, headers=world.partner("ngo-other"))
    assert r.status_code == 404
    r = await world.api.patch(
        url,
        content=b'{"status": "inactive"}',
        headers={**world.headers(areas=[world.place.other_commune]), **MERGE, "If-Match": '"1"'},
    )
    assert r.status_code == 404
    r = await world.api.get("/v1/casework/workers/not-an-id", headers=world.headers())
    assert r.status_code == 404


async def test_list_workers_with_filters_and_pages(world: World) -> None:
    a = await world.worker(areas=[world.place.commune], role="ccwc_focal_point")
    b = await world.worker(areas=[world.place.other_commune])
    c = await world.worker(areas=[world.place.other_commune], status="inactive")
    h = world.headers()

    async def ids(**params: str) -> list[str]:
        r = await world.api.get("/v1/casework/workers", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [w["id"] for w in r.json()["items"]]

    assert await ids() == [a["id"], b["id"], c["id"]]
    assert await ids(role="ccwc_focal_point") == [a["id"]]
    assert await ids(status="inactive") == [c["id"]]
    assert await ids(area=world.place.other_commune) == [b["id"], c["id"]]
    assert await ids(area=world.place.village) == [a["id"]]
    r = await world.api.get("/v1/casework/workers", params={"limit": 2}, headers=h)
    page = r.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    r = await world.api.get(
        "/v1/casework/workers", params={"limit": 2, "cursor": page["next_cursor"]}, headers=h
    )
    assert [w["id"] for w in r.json()["items"]] == [c["id"]]
    assert r.json()["next_cursor"] is None
    since = c["updated_at"]
    r = await world.api.get("/v1/casework/workers", params={"updated_since": since}, headers=h)
    assert [w["id"] for w in r.json()["items"]] == [c["id"]]
    r = await world.api.get("/v1/casework/workers", params={"cursor": "garbage!"}, headers=h)
    assert r.status_code == 422


async def test_hostile_worker_input(world: World) -> None:
    bad = [
        {"given_name": "Nul\x00l"},
        {"areas": ["99999999"]},
        {"areas": [world.place.district] * 101},
        {"max_caseload": -1},
        {"max_caseload": "5"},
        {"trainings": [{"course": "juggling", "completed_on": "2026-01-01"}]},
        {
            "contracts": [
                {"org": "x", "start_on": "2026-02-01", "end_on": "2026-01-01", "monthly_fee_khr": 1}
            ]
        },
        {"contracts": [{"org": "x", "start_on": "1066-10-14", "monthly_fee_khr": 1}]},
        {"surprise": True},
        {"given_name": "x" * 101},
    ]
    for overrides in bad:
        r = await world.api.post(
            "/v1/casework/workers", json={**_base(world), **overrides}, headers=world.headers()
        )
        assert r.status_code == 422, (overrides, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def _base(world: World) -> dict:
    from tests.casework.conftest import valid_worker

    return valid_worker(world.place)


async def test_the_workers_feed(world: World) -> None:
    worker = await world.worker(areas=[world.place.commune])
    r = await world.api.patch(
        f"/v1/casework/workers/{worker['id']}",
        content=b'{"max_caseload": 10}',
        headers={**world.headers(), **MERGE, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text

    async def changes(headers: dict[str, str]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        cursor = None
        while True:
            params = {"limit": 1000, **({"after": cursor} if cursor else {})}
            r = await world.api.get("/v1/casework/changes", params=params, headers=headers)
            assert r.status_code == 200, r.text
            page = r.json()
            found += [(c["id"], c["version"]) for c in page["items"] if c["id"] == worker["id"]]
            if not page["items"]:
                return found
            cursor = page["next_cursor"]

    from tests.casework.conftest import until

    async def both() -> list[tuple[str, int]]:
        found = await changes(world.headers())
        return found if len(found) == 2 else []

    assert await until(both) == [(worker["id"], 1), (worker["id"], 2)]
    assert await changes(world.partner("ngo-stranger")) == []
