"""Object-level access on every referrals endpoint that takes an id, and in lists
(docs/api-guide.md#access)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.referrals import conftest
from tests.referrals.conftest import World
from tests.support import ALL_SCOPES

REFERRAL_ENDPOINTS = [
    ("GET", "/v1/referrals/{id}", None),
    ("POST", "/v1/referrals/{id}/accept", None),
    ("POST", "/v1/referrals/{id}/decline", {"reason": "no"}),
    ("POST", "/v1/referrals/{id}/complete", {"outcome": {"code": "other"}}),
    ("POST", "/v1/referrals/{id}/cancel", {"reason": "no"}),
]
PROVIDER_ENDPOINTS = [
    ("GET", "/v1/referrals/providers/{id}", None),
    ("PATCH", "/v1/referrals/providers/{id}", {"capacity": 99}),
    ("POST", "/v1/referrals/providers/{id}/deactivate", None),
]


async def call(world: World, method: str, path: str, body: object, headers: dict):
    return await world.api.request(method, path, json=body, headers={**headers, "If-Match": '"1"'})


async def a_referral(world: World, *, org: str = "ngo-provider") -> tuple[dict, dict]:
    """A pending referral in this test's commune (by government), with its provider."""
    provider = await world.provider([world.place.commune], org=f"{org}-{uuid.uuid4().hex[:6]}")
    return provider, (await world.refer(await world.child())).json()


@pytest.mark.parametrize(("method", "path", "body"), REFERRAL_ENDPOINTS)
async def test_a_principal_of_another_commune_gets_404(
    world: World, method: str, path: str, body: object
) -> None:
    provider, referral = await a_referral(world)
    # all scopes, even the provider's own organisation, but working in another commune
    others = [
        world.headers(areas=[world.place.other_commune]),
        world.headers(org=provider["org"], org_type="partner", areas=[world.place.other_commune]),
    ]
    for headers in others:
        r = await call(world, method, path.format(id=referral["id"]), body, headers)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        missing = await call(world, method, path.format(id=uuid.uuid4()), body, headers)
        assert missing.status_code == 404
        assert missing.json()["detail"] == r.json()["detail"]
    assert (await world.get_referral(referral["id"]))["version"] == 1


@pytest.mark.parametrize(("method", "path", "body"), REFERRAL_ENDPOINTS)
async def test_a_partner_neither_provider_nor_referrer_gets_404(
    world: World, method: str, path: str, body: object
) -> None:
    _, referral = await a_referral(world)
    stranger = world.headers(org="ngo-stranger", org_type="partner")
    r = await call(world, method, path.format(id=referral["id"]), body, stranger)
    assert r.status_code == 404
    assert (await world.get_referral(referral["id"]))["version"] == 1


@pytest.mark.parametrize(("method", "path", "body"), PROVIDER_ENDPOINTS)
async def test_a_provider_outside_ones_areas_is_404(
    world: World, method: str, path: str, body: object
) -> None:
    provider = await world.provider([world.place.commune])
    outside = world.headers(areas=[world.place.other_commune])
    r = await call(world, method, path.format(id=provider["id"]), body, outside)
    assert r.status_code == 404
    missing = await call(world, method, path.format(id=uuid.uuid4()), body, outside)
    assert missing.json()["detail"] == r.json()["detail"]
    assert (await world.get_provider(provider))["version"] == 1
    # a principal of a village inside the provider's commune does see it
    inside = world.headers(areas=[world.place.village], scope="referrals:read")
    seen = await world.api.get(f"/v1/referrals/providers/{provider['id']}", headers=inside)
    assert seen.status_code == 200


async def test_lists_never_include_what_one_cannot_see(world: World) -> None:
    p = world.place
    provider, referral = await a_referral(world)
    other_provider = await world.provider([p.other_commune])
    partner_referrer = world.headers(org="ngo-ref-lists", org_type="partner")
    partner_child = await world.child(owner_org="ngo-ref-lists")
    theirs = (await world.refer(partner_child, headers=partner_referrer)).json()

    async def referral_ids(headers: dict) -> set[str]:
        r = await world.api.get("/v1/referrals?limit=500", headers=headers)
        assert r.status_code == 200
        return {x["id"] for x in r.json()["items"]}

    async def provider_ids(headers: dict) -> set[str]:
        r = await world.api.get("/v1/referrals/providers?limit=500", headers=headers)
        assert r.status_code == 200
        return {x["id"] for x in r.json()["items"]}

    district = await referral_ids(world.headers())
    assert {referral["id"], theirs["id"]} <= district
    assert not await referral_ids(world.headers(areas=[p.other_commune])) & district
    assert await referral_ids(world.headers(org="ngo-stranger", org_type="partner")) == set()
    assert await referral_ids(partner_referrer) == {theirs["id"]}
    provider_staff = world.provider_staff(provider)
    assert await referral_ids(provider_staff) == {referral["id"], theirs["id"]}

    assert {provider["id"], other_provider["id"]} <= await provider_ids(world.headers())
    in_commune = await provider_ids(world.headers(areas=[p.commune]))
    assert provider["id"] in in_commune
    assert other_provider["id"] not in in_commune


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/referrals", "referrals:read referrals:respond"),
        ("GET", "/v1/referrals", "referrals:write referrals:respond"),
        ("POST", "/v1/referrals/providers", "referrals:read"),
        ("GET", "/v1/referrals/providers", "registry:read"),
    ],
)
async def test_a_missing_scope_is_403(world: World, method: str, path: str, scope: str) -> None:
    await world.provider([world.place.district])
    body = (
        {"child_id": await world.child(), "service_type": "health", "reason": "needs care"}
        if path == "/v1/referrals"
        else {
            "name": "Clinic",
            "org": "ngo-x",
            "service_types": ["health"],
            "areas": [world.place.village],
            "capacity": 3,
        }
    )
    r = await world.api.request(method, path, json=body, headers=world.headers(scope=scope))
    assert r.status_code == 403
    assert "referrals:" in r.json()["detail"]
    listed = await world.api.get("/v1/referrals?limit=500", headers=world.headers())
    assert listed.json()["items"] == []  # nothing was created


async def test_providers_are_managed_only_inside_ones_areas(world: World) -> None:
    p = world.place
    body = {"name": "Clinic", "org": "ngo-x", "service_types": ["health"], "capacity": 3}
    commune_staff = world.headers(areas=[p.commune])
    outside = await world.api.post(
        "/v1/referrals/providers", json={**body, "areas": [p.district]}, headers=commune_staff
    )
    assert outside.status_code == 403
    country = await world.api.post(
        "/v1/referrals/providers", json={**body, "areas": ["KH"]}, headers=commune_staff
    )
    assert country.status_code == 403
    inside = await world.api.post(
        "/v1/referrals/providers", json={**body, "areas": [p.village]}, headers=commune_staff
    )
    assert inside.status_code == 201
    # a provider serving the whole district is visible to commune staff, but not theirs to edit
    district_wide = await world.provider([p.district])
    r = await world.api.patch(
        f"/v1/referrals/providers/{district_wide['id']}",
        json={"capacity": 1},
        headers={**commune_staff, "If-Match": '"1"'},
    )
    assert r.status_code == 403
    # and a partner manages only its own organisation's providers
    partner = world.headers(org="ngo-y", org_type="partner")
    foreign = await world.api.post(
        "/v1/referrals/providers", json={**body, "areas": [p.village]}, headers=partner
    )
    assert foreign.status_code == 403
    own = await world.api.post(
        "/v1/referrals/providers",
        json={**body, "org": "ngo-y", "areas": [p.village]},
        headers=partner,
    )
    assert own.status_code == 201


async def test_referring_needs_a_child_one_can_see(world: World) -> None:
    p = world.place
    await world.provider([p.district])
    gov_child = await world.child()
    ngo_child = await world.child(owner_org="ngo-owner")

    other_commune = world.headers(areas=[p.other_commune])
    r = await world.refer(gov_child, headers=other_commune, expect=404)
    unknown = await world.refer(str(uuid.uuid4()), headers=other_commune, expect=404)
    assert r.json()["detail"] == unknown.json()["detail"]
    assert "not have reached" in unknown.json()["detail"]

    stranger = world.headers(org="ngo-stranger", org_type="partner")
    await world.refer(ngo_child, headers=stranger, expect=404)
    owner = world.headers(org="ngo-owner", org_type="partner")
    await world.refer(ngo_child, headers=owner)


async def test_a_provider_holding_an_accepted_referral_may_refer_the_child_on(
    world: World,
) -> None:
    p = world.place
    health = await world.provider([p.district], ["health"], org="ngo-clinic")
    await world.provider([p.district], ["education"])
    child = await world.child()
    clinic = world.headers(org="ngo-clinic", org_type="partner", scope=ALL_SCOPES)
    await world.refer(child, "education", headers=clinic, expect=404)  # not theirs yet
    referral = (await world.refer(child, "health")).json()
    assert referral["provider_id"] == health["id"]
    await world.refer(child, "education", headers=clinic, expect=404)  # pending is not enough
    accepted = await world.api.post(f"/v1/referrals/{referral['id']}/accept", headers=clinic)
    assert accepted.status_code == 200
    await world.refer(child, "education", headers=clinic)  # now the child is shared with them


async def test_a_closed_case_cannot_be_referred(world: World) -> None:
    await world.provider([world.place.district])
    child = await world.child(status="closed")
    r = await world.refer(child, expect=409)
    assert "closed" in r.json()["detail"]


async def test_the_listed_commune_owns_an_anomalous_village(world: World) -> None:
    # 02140408 and 02140409 are listed under 021405, though their code names 021404
    assert "0214" not in conftest._USED_DISTRICTS, "another test routes in 0214"
    conftest._USED_DISTRICTS.add("0214")
    anomalous = conftest.Place("02", "0214", "021405", "02140408", "02140409", "021404", "02140407")
    here = conftest.World(world.api, world.keys, world.js, world.db, anomalous)
    named = await here.provider(["021404"], org=f"ngo-named-{uuid.uuid4().hex[:6]}")
    listed = await here.provider(["021405"], org=f"ngo-listed-{uuid.uuid4().hex[:6]}")
    child = await here.child(village="02140408", commune="021405")
    routed = (await here.refer(child)).json()
    assert routed["provider_id"] == listed["id"]
    r = await here.refer(child, "health", provider_id=named["id"], expect=422)
    assert "does not serve" in r.json()["detail"]
    url = f"/v1/referrals/{routed['id']}"
    assert (await here.api.get(url, headers=here.headers(areas=["021405"]))).status_code == 200
    assert (await here.api.get(url, headers=here.headers(areas=["021404"]))).status_code == 404
    far = here.headers(areas=["021404"])
    assert (await here.refer(child, headers=far, expect=404)).status_code == 404
    # a government principal of the listed commune (not the referrer) may cancel it
    staff = here.headers(org="moswvy-other", areas=["021405"])
    r = await here.api.post(f"{url}/cancel", json={"reason": "moved"}, headers=staff)
    assert r.status_code == 200, r.text


async def test_a_provider_refers_on_while_its_referral_is_active(world: World) -> None:
    provider = await world.provider([world.place.commune], org=f"clinic-{uuid.uuid4().hex[:6]}")
    staff = world.provider_staff(provider)
    child = await world.child()
    referral = (await world.refer(child)).json()
    await world.refer(child, "education", headers=staff, expect=404)  # pending: not theirs
    url = f"/v1/referrals/{referral['id']}"
    assert (await world.api.post(f"{url}/accept", headers=staff)).status_code == 200
    await world.provider([world.place.commune], ["education", "legal"])
    await world.refer(child, "education", headers=staff, expect=201)
    done = await world.api.post(
        f"{url}/complete", json={"outcome": {"code": "service_provided"}}, headers=staff
    )
    assert done.status_code == 200, done.text
    await world.refer(child, "legal", headers=staff, expect=201)  # completed just now
    async with world.db.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE referrals.referrals SET closed_at = closed_at - interval '31 days'"
                " WHERE id = :id"
            ),
            {"id": referral["id"]},
        )
    await world.refer(child, "legal", headers=staff, expect=404)  # 31 days ago: no more
