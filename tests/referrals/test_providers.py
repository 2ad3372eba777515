"""The social services map: providers created, read, listed, patched and deactivated."""

from __future__ import annotations

import asyncio

from tests.referrals.conftest import World


def body(world: World, **over: object) -> dict:
    return {
        "name": "Hope Clinic",
        "org": "ngo-hope",
        "service_types": ["health", "psychosocial", "health"],
        "areas": [world.place.commune],
        "contact": {"phone": "+855 12 000 111", "email": "desk@hope.org.kh"},
        "capacity": 3,
        **over,
    }


async def test_create_read_and_bad_input(world: World) -> None:
    r = await world.api.post("/v1/referrals/providers", json=body(world), headers=world.headers())
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/v1/referrals/providers/{created['id']}"
    assert r.headers["etag"] == '"1"'
    assert created["service_types"] == ["health", "psychosocial"]
    assert created["active"] is True
    assert created["open_referrals"] == 0
    assert created["contact"] == {"phone": "+855 12 000 111", "email": "desk@hope.org.kh"}
    read = await world.api.get(r.headers["location"], headers=world.headers(scope="referrals:read"))
    assert read.json() == created

    for bad, field in [
        ({"areas": ["12999999"]}, "areas"),  # not in the gazetteer
        ({"areas": []}, "areas"),
        ({"service_types": ["magic"]}, "service_types"),
        ({"capacity": -1}, "capacity"),
        ({"contact": {"phone": "call me", "fax": "1"}}, "contact"),
        ({"colour": "blue"}, "colour"),
    ]:
        r = await world.api.post(
            "/v1/referrals/providers", json=body(world, **bad), headers=world.headers()
        )
        assert r.status_code == 422, bad
        assert r.headers["content-type"] == "application/problem+json"
        assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.json()


async def test_patch_needs_a_fresh_if_match_and_keeps_capacity_above_the_load(
    world: World,
) -> None:
    provider = await world.provider([world.place.village], capacity=3)
    url = f"/v1/referrals/providers/{provider['id']}"
    change = {"capacity": 5, "contact": None, "service_types": ["health", "shelter"]}
    assert (await world.api.patch(url, json=change, headers=world.headers())).status_code == 428
    stale = await world.api.patch(url, json=change, headers={**world.headers(), "If-Match": '"9"'})
    assert stale.status_code == 412
    r = await world.api.patch(url, json=change, headers={**world.headers(), "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert (r.json()["capacity"], r.json()["version"], r.json()["contact"]) == (5, 2, None)
    assert r.headers["etag"] == '"2"'
    assert r.json()["service_types"] == ["health", "shelter"]
    for bad in ({"name": None}, {}, {"org": "ngo-other"}, {"areas": ["KH"]}):
        r = await world.api.patch(url, json=bad, headers={**world.headers(), "If-Match": '"2"'})
        assert r.status_code in (403, 422), bad

    await world.refer(await world.child())
    await world.refer(await world.child())
    r = await world.api.patch(
        url, json={"capacity": 1}, headers={**world.headers(), "If-Match": '"2"'}
    )
    assert r.status_code == 409
    assert "2 open referrals" in r.json()["detail"]
    assert (await world.get_provider(provider))["capacity"] == 5


async def test_two_patches_with_the_same_etag_one_wins(world: World) -> None:
    provider = await world.provider([world.place.village])
    url = f"/v1/referrals/providers/{provider['id']}"
    h = {**world.headers(), "If-Match": '"1"'}
    results = await asyncio.gather(
        world.api.patch(url, json={"capacity": 7}, headers=h),
        world.api.patch(url, json={"capacity": 8}, headers=h),
    )
    assert sorted(r.status_code for r in results) == [200, 412]
    assert (await world.get_provider(provider))["version"] == 2


async def test_a_deactivated_provider_gets_no_new_referrals(world: World) -> None:
    p = world.place
    village = await world.provider([p.village])
    district = await world.provider([p.district])
    url = f"/v1/referrals/providers/{village['id']}/deactivate"
    r = await world.api.post(url, headers=world.headers())
    assert r.status_code == 200
    assert (r.json()["active"], r.json()["version"]) == (False, 2)
    again = await world.api.post(url, headers=world.headers())
    assert (again.status_code, again.json()["version"]) == (200, 2)  # already inactive
    referral = (await world.refer(await world.child())).json()
    assert referral["provider_id"] == district["id"]

    r = await world.api.patch(
        f"/v1/referrals/providers/{village['id']}",
        json={"active": True},
        headers={**world.headers(), "If-Match": '"2"'},
    )
    assert r.json()["active"] is True
    assert (await world.refer(await world.child())).json()["provider_id"] == village["id"]


async def test_the_list_filters_and_pages(world: World) -> None:
    p = world.place
    district = await world.provider([p.district], ["health", "legal"])
    commune = await world.provider([p.commune], ["legal"])
    other = await world.provider([p.other_commune], ["health"])
    inactive = await world.provider([p.village], ["legal"], active=False)
    h = world.headers(areas=[p.district])

    async def ids(query: str) -> list[str]:
        r = await world.api.get(f"/v1/referrals/providers?{query}", headers=h)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    mine = {district["id"], commune["id"], other["id"], inactive["id"]}
    assert set(await ids("limit=500")) == mine
    # providers whose areas cover the whole commune (one serving a single village does not)
    assert set(await ids(f"commune_code={p.commune}")) == {district["id"], commune["id"]}
    legal = f"commune_code={p.commune}&service_type=legal&active=true"
    assert set(await ids(legal)) == {district["id"], commune["id"]}
    assert set(await ids("active=false")) == {inactive["id"]}
    since = (await world.get_provider(other))["updated_at"]
    changed_since = f"updated_since={since.replace('+', '%2B')}"
    assert set(await ids(changed_since)) == {other["id"], inactive["id"]}

    pages, cursor = [], ""
    while True:
        r = await world.api.get(f"/v1/referrals/providers?limit=1{cursor}", headers=h)
        pages.append([x["id"] for x in r.json()["items"]])
        if r.json()["next_cursor"] is None:
            break
        cursor = f"&cursor={r.json()['next_cursor']}"
    assert [len(x) for x in pages] == [1, 1, 1, 1]
    assert {x for page in pages for x in page} == mine

    bad = await world.api.get("/v1/referrals/providers?commune_code=129999", headers=h)
    assert bad.status_code == 422
