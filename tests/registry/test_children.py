"""Registering, reading, listing, changing, closing and reopening children."""

from __future__ import annotations

import uuid

import httpx
import pytest

from libs.common import clock
from tests.registry.conftest import child_body
from tests.support import SigningKeys


def unique_org() -> str:
    return f"ngo-{uuid.uuid4().hex[:8]}"


async def register(api: httpx.AsyncClient, headers: dict[str, str], **overrides: object) -> dict:
    r = await api.post("/v1/registry/children", json=child_body(**overrides), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_register_answers_201_with_location_etag_and_case_number(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    r = await api.post("/v1/registry/children", json=child_body(), headers=h)
    assert r.status_code == 201
    child = r.json()
    assert r.headers["location"] == f"/v1/registry/children/{child['id']}"
    assert r.headers["etag"] == '"1"'
    assert child["case_number"].startswith("120101-")
    assert child["commune_code"] == "120101"
    assert child["status"] == "open"
    assert child["possible_duplicates"] == []
    got = await api.get(r.headers["location"], headers=h)
    assert got.status_code == 200
    assert got.json()["given_name"] == "Sokha"
    assert got.headers["etag"] == '"1"'


async def test_same_external_id_of_same_org_answers_existing_child(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    org = unique_org()
    h = keys.headers(org=org, org_type="partner")
    ext = [{"system": "ngo-cms", "value": "A-17"}]
    first = await register(api, h, external_ids=ext)
    again = await api.post("/v1/registry/children", json=child_body(external_ids=ext), headers=h)
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    other_org = keys.headers(org=unique_org(), org_type="partner")
    third = await api.post(
        "/v1/registry/children", json=child_body(external_ids=ext), headers=other_org
    )
    assert third.status_code == 201
    assert third.json()["id"] != first["id"]


async def test_likely_duplicate_still_registers_and_is_listed(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    first = await register(api, h, given_name="Vannak", family_name="Keo", birth_date="2016-02-01")
    second = await api.post(
        "/v1/registry/children",
        json=child_body(given_name="Vanak", family_name="Keo", birth_date="2016-03-01"),
        headers=h,
    )
    assert second.status_code == 201
    dupes = second.json()["possible_duplicates"]
    assert [d["id"] for d in dupes] == [first["id"]]
    listed = await api.get(f"/v1/registry/children/{first['id']}/duplicates", headers=h)
    assert listed.status_code == 200
    assert second.json()["id"] in [d["id"] for d in listed.json()["items"]]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"village_code": None, "commune_code": "129999"}, "commune_code"),
        ({"village_code": "12019999"}, "village_code"),
        ({"birth_date": "2005-01-01"}, "birth_date"),
        ({"birth_date": "2015-02-30"}, "birth_date"),
        ({"birth_date": "12/04/2015"}, "birth_date"),
        ({"nickname": "Toch"}, "nickname"),
        ({"sex": "unknown"}, "sex"),
        ({"vulnerabilities": ["bad_luck"]}, "vulnerabilities"),
    ],
)
async def test_bad_input_answers_422_problem_and_stores_nothing(
    api: httpx.AsyncClient, keys: SigningKeys, overrides: dict, field: str
) -> None:
    org = unique_org()
    h = keys.headers(org=org, org_type="partner")
    body = child_body(**overrides)
    body = {k: v for k, v in body.items() if v is not None}
    r = await api.post("/v1/registry/children", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert any(field in e["field"] or field in e["message"] for e in problem["errors"])
    assert "Sokha" not in r.text  # no personal data echoed
    listed = await api.get("/v1/registry/children", headers=h)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"given_name": "Sokha",', "application/json"),  # cut short
        (b"", "application/json"),  # no body
        (b'{"given_name": "Sokha"}', "text/plain"),  # not declared as JSON
        (b'["Sokha"]', "application/json"),  # not an object
    ],
)
async def test_a_body_that_is_not_a_child_object_answers_422_and_stores_nothing(
    api: httpx.AsyncClient, keys: SigningKeys, content: bytes, content_type: str
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    r = await api.post(
        "/v1/registry/children", content=content, headers={**h, "Content-Type": content_type}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"]
    assert "Sokha" not in r.text
    listed = await api.get("/v1/registry/children", headers=h)
    assert listed.json()["items"] == []


async def test_child_turning_18_today_is_refused(api: httpx.AsyncClient, keys: SigningKeys) -> None:

    today = clock.today()
    eighteen = today.replace(year=today.year - 18).isoformat()
    r = await api.post(
        "/v1/registry/children", json=child_body(birth_date=eighteen), headers=keys.headers()
    )
    assert r.status_code == 422


async def test_two_mib_body_answers_413(api: httpx.AsyncClient, keys: SigningKeys) -> None:
    big = child_body(given_name="x" * (2 * 1024 * 1024))
    r = await api.post("/v1/registry/children", json=big, headers=keys.headers())
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


async def test_list_limit_over_500_answers_422(api: httpx.AsyncClient, keys: SigningKeys) -> None:
    r = await api.get("/v1/registry/children?limit=501", headers=keys.headers())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "limit"


async def test_list_filters_search_and_pages(api: httpx.AsyncClient, keys: SigningKeys) -> None:
    org = unique_org()
    h = keys.headers(org=org, org_type="partner")
    khmer = await register(api, h, given_name="សុខា", family_name="ចាន់", risk_level="high")
    latin = await register(
        api, h, given_name="Dara", family_name="Sok", vulnerabilities=["disability"]
    )
    other_commune = await register(api, h, village_code="12010901")

    async def ids(query: str) -> list[str]:
        r = await api.get(f"/v1/registry/children?{query}", headers=h)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["items"]]

    assert await ids("q=សុខា") == [khmer["id"]]
    assert await ids("q=dara%20sok") == [latin["id"]]
    assert await ids("q=SOK%20DARA") == [latin["id"]]  # family name first
    assert await ids("risk_level=high") == [khmer["id"]]
    assert await ids("vulnerability=disability") == [latin["id"]]
    assert await ids("commune_code=120109") == [other_commune["id"]]
    page1 = await api.get("/v1/registry/children?limit=2", headers=h)
    body1 = page1.json()
    assert len(body1["items"]) == 2
    assert body1["next_cursor"]
    page2 = await api.get(f"/v1/registry/children?limit=2&cursor={body1['next_cursor']}", headers=h)
    body2 = page2.json()
    assert body2["next_cursor"] is None
    all_ids = [c["id"] for c in body1["items"] + body2["items"]]
    assert sorted(all_ids) == sorted([khmer["id"], latin["id"], other_commune["id"]])
    since = body1["items"][-1]["updated_at"]
    assert await ids(str(httpx.QueryParams({"updated_since": since}))) == [
        c["id"] for c in body1["items"][-1:] + body2["items"]
    ]


async def test_patch_requires_if_match_and_records_history(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    child = await register(api, h)
    url = f"/v1/registry/children/{child['id']}"
    r = await api.patch(url, json={"risk_level": "high"}, headers=h)
    assert r.status_code == 428
    r = await api.patch(url, json={"risk_level": "high"}, headers={**h, "If-Match": '"7"'})
    assert r.status_code == 412
    r = await api.patch(
        url,
        json={"risk_level": "high", "caregiver": None},
        headers={**h, "If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    assert r.json()["risk_level"] == "high"
    assert r.json()["caregiver"] is None
    history = (await api.get(f"{url}/history", headers=h)).json()["items"]
    assert [e["action"] for e in history] == ["registered", "updated"]
    assert history[1]["changes"]["risk_level"] == {"old": "medium", "new": "high"}
    assert history[1]["by"]["org"] == child["owner_org"]


async def test_patch_rejects_nulling_a_required_field(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    child = await register(api, h)
    r = await api.patch(
        f"/v1/registry/children/{child['id']}", json={"sex": None}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 422


async def test_close_and_reopen_follow_the_case_states(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    child = await register(api, h)
    url = f"/v1/registry/children/{child['id']}"
    assert (await api.post(f"{url}/reopen", headers=h)).status_code == 409
    closed = await api.post(f"{url}/close", json={"reason": "reunified with family"}, headers=h)
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    again = await api.post(f"{url}/close", json={"reason": "again"}, headers=h)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    stale = await api.post(f"{url}/reopen", headers={**h, "If-Match": '"1"'})
    assert stale.status_code == 412
    reopened = await api.post(f"{url}/reopen", headers=h)
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "open"
    assert reopened.json()["version"] == 3


async def test_batch_registers_in_order_with_errors_and_existing(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    ext = [{"system": "cms", "value": "B-1"}]
    existing = await register(api, h, external_ids=ext)
    items = [
        child_body(given_name="One", external_ids=[{"system": "cms", "value": "B-2"}]),
        child_body(birth_date="2001-01-01"),
        child_body(external_ids=ext),
        child_body(given_name="Two", external_ids=[{"system": "cms", "value": "B-2"}]),
        child_body(commune_code="999999", village_code=None),
        child_body(given_name="Three", village_code="02010101"),
    ]
    r = await api.post("/v1/registry/children:batch", json={"items": items}, headers=h)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [
        "created",
        "error",
        "existing",
        "existing",
        "error",
        "error",
    ]
    assert results[2]["id"] == existing["id"]
    assert results[3]["id"] == results[0]["id"]
    assert results[1]["problem"]["status"] == 422
    assert results[5]["problem"]["status"] == 403  # outside the principal's areas
    got = await api.get(f"/v1/registry/children/{results[0]['id']}", headers=h)
    assert got.json()["given_name"] == "One"


async def test_batch_of_1000_is_accepted_and_1001_refused(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    items = [child_body(given_name=f"Child{i}") for i in range(1000)]
    r = await api.post("/v1/registry/children:batch", json={"items": items}, headers=h)
    assert r.status_code == 200
    assert {x["status"] for x in r.json()["results"]} == {"created"}
    r = await api.post(
        "/v1/registry/children:batch", json={"items": [*items, child_body()]}, headers=h
    )
    assert r.status_code == 422
