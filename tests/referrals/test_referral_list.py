"""Creating referrals safely under retries, and finding them again: filters and pages."""

from __future__ import annotations

import asyncio

from tests.referrals.conftest import World


async def test_a_retried_create_with_one_idempotency_key_makes_one_referral(
    world: World,
) -> None:
    provider = await world.provider([world.place.village])
    child = await world.child()
    h = {**world.headers(sub="sync-client"), "Idempotency-Key": "refer-once"}
    body = {"child_id": child, "service_type": "health", "reason": "needs care"}
    results = await asyncio.gather(
        *[world.api.post("/v1/referrals", json=body, headers=h) for _ in range(5)]
    )
    assert {r.status_code for r in results} <= {201, 409}
    created = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(created) == 1
    replay = await world.api.post("/v1/referrals", json=body, headers=h)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] in created
    other = await world.api.post("/v1/referrals", json={**body, "urgency": "high"}, headers=h)
    assert other.status_code == 422
    assert (await world.get_provider(provider))["open_referrals"] == 1


async def test_the_list_filters_and_pages(world: World) -> None:
    p = world.place
    clinic = await world.provider([p.commune], ["health", "education"])
    school = await world.provider([p.district], ["education"])
    child = await world.child()
    health = (await world.refer(child, "health")).json()
    education = (await world.refer(child, "education")).json()
    other_child = (await world.refer(await world.child(village=p.other_village), "health")).json()
    r = await world.api.post(
        f"/v1/referrals/{health['id']}/accept", headers=world.provider_staff(clinic)
    )
    assert r.status_code == 200
    assert education["provider_id"] == clinic["id"]  # the commune one offers education too

    async def ids(query: str) -> set[str]:
        r = await world.api.get(f"/v1/referrals?limit=500&{query}", headers=world.headers())
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["items"]}

    everything = {health["id"], education["id"], other_child["id"]}
    assert await ids("") == everything
    assert await ids(f"child_id={child}") == {health["id"], education["id"]}
    assert await ids("status=accepted") == {health["id"]}
    assert await ids("status=pending&service_type=health") == {other_child["id"]}
    assert await ids("service_type=education") == {education["id"]}
    assert await ids(f"provider_id={school['id']}") == set()
    assert await ids("overdue=true") == set()
    assert await ids("overdue=false") == everything
    accepted_at = (await world.get_referral(health["id"]))["updated_at"]
    assert await ids(f"updated_since={accepted_at.replace('+', '%2B')}") == {health["id"]}

    seen, cursor, pages = [], "", 0
    while True:
        r = await world.api.get(f"/v1/referrals?limit=2{cursor}", headers=world.headers())
        seen += [x["id"] for x in r.json()["items"]]
        pages += 1
        if r.json()["next_cursor"] is None:
            break
        cursor = f"&cursor={r.json()['next_cursor']}"
    assert (pages, len(seen), set(seen)) == (2, 3, everything)
    for bad in ("status=lost", "child_id=nope", "cursor=garbage", "limit=501"):
        r = await world.api.get(f"/v1/referrals?{bad}", headers=world.headers())
        assert r.status_code == 422, bad
