"""Funds: creation rules, who sees which fund, top-ups, the paginated ledger."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.funds.conftest import People, fund_body, make_fund


async def test_a_fund_is_created_with_location_etag_and_derived_balances(
    api: httpx.AsyncClient, people: People
) -> None:
    r = await api.post(
        "/v1/funds/funds", json=fund_body(budget_khr=750_000), headers=people.manager
    )
    assert r.status_code == 201, r.text
    fund = r.json()
    assert r.headers["location"] == f"/v1/funds/funds/{fund['id']}"
    assert r.headers["etag"] == '"1"'
    assert (fund["committed_khr"], fund["disbursed_khr"], fund["available_khr"]) == (
        0,
        0,
        750_000,
    )
    again = await api.get(r.headers["location"], headers=people.manager)
    assert again.json() == fund


@pytest.mark.parametrize("code", ["1201", "12"])
async def test_district_and_province_funds_are_allowed(
    api: httpx.AsyncClient, people: People, code: str
) -> None:
    fund = await make_fund(api, people, commune_code=code)
    assert fund["commune_code"] == code


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"commune_code": "12010101"}, "commune_code"),  # a village
        ({"commune_code": "129999"}, "body"),  # not in the gazetteer
        ({"budget_khr": 1000000.0}, "budget_khr"),
        ({"budget_khr": "1000000"}, "budget_khr"),
        ({"budget_khr": -1}, "budget_khr"),
        ({"max_grant_khr": 0}, "max_grant_khr"),
        ({"approval_threshold_khr": 2.5}, "approval_threshold_khr"),
        ({"fiscal_year": "2026"}, "fiscal_year"),
        ({"owner": "me"}, "owner"),
    ],
)
async def test_bad_funds_are_422(
    api: httpx.AsyncClient, people: People, overrides: dict, field: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    r = await api.post(
        "/v1/funds/funds", json=fund_body(name=name, **overrides), headers=people.manager
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in r.json()["errors"]}
    listed = await api.get("/v1/funds/funds?limit=500", headers=people.manager)
    assert name not in {f["name"] for f in listed.json()["items"]}


async def test_fund_creation_needs_the_scope_and_the_place_in_ones_areas(
    api: httpx.AsyncClient, people: People
) -> None:
    reader = people.h("reader", areas=["12"], scope="funds:read funds:request")
    assert (await api.post("/v1/funds/funds", json=fund_body(), headers=reader)).status_code == 403
    commune_manager = people.h("cm", areas=["120101"], scope="funds:manage")
    r = await api.post(
        "/v1/funds/funds", json=fund_body(commune_code="1201"), headers=commune_manager
    )
    assert r.status_code == 403  # a district fund is above a commune manager's areas


async def test_the_same_fund_twice_is_409(api: httpx.AsyncClient, people: People) -> None:
    body = fund_body()
    assert (await api.post("/v1/funds/funds", json=body, headers=people.manager)).status_code == 201
    r = await api.post("/v1/funds/funds", json=body, headers=people.manager)
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]


async def test_funds_are_seen_where_areas_overlap(api: httpx.AsyncClient, people: People) -> None:
    year = 2030 + uuid.uuid4().int % 60  # a year of this test's own
    commune = await make_fund(api, people, fiscal_year=year)  # 120101
    district = await make_fund(api, people, commune_code="1201", fiscal_year=year)
    neighbour = await make_fund(api, people, commune_code="120109", fiscal_year=year)
    elsewhere = await make_fund(api, people, commune_code="1202", fiscal_year=year)

    async def seen(areas: list[str]) -> set[str]:
        h = people.h("viewer", areas=areas, scope="funds:read")
        r = await api.get(f"/v1/funds/funds?fiscal_year={year}&limit=500", headers=h)
        return {f["id"] for f in r.json()["items"]}

    assert await seen(["120101"]) == {commune["id"], district["id"]}
    assert await seen(["1201"]) == {commune["id"], district["id"], neighbour["id"]}
    assert await seen(["12"]) == {f["id"] for f in (commune, district, neighbour, elsewhere)}
    assert await seen(["02"]) == set()
    viewer = people.h("viewer", areas=["120101"], scope="funds:read")
    assert (await api.get(f"/v1/funds/funds/{district['id']}", headers=viewer)).status_code == 200
    assert (await api.get(f"/v1/funds/funds/{neighbour['id']}", headers=viewer)).status_code == 404


async def test_a_commune_manager_sees_but_cannot_top_up_the_district_fund(
    api: httpx.AsyncClient, people: People
) -> None:
    district = await make_fund(api, people, commune_code="1201")
    commune_manager = people.h("cm", areas=["120101"], scope="funds:read funds:manage")
    r = await api.post(
        f"/v1/funds/funds/{district['id']}/top-ups",
        json={"amount_khr": 1000, "reference": "T-1"},
        headers=commune_manager,
    )
    assert r.status_code == 403


@pytest.mark.parametrize("amount", [0, -100, 1.5, 1e3, "1000", None])
async def test_bad_top_ups_are_422_and_book_nothing(
    api: httpx.AsyncClient, people: People, amount: object
) -> None:
    fund = await make_fund(api, people)
    r = await api.post(
        f"/v1/funds/funds/{fund['id']}/top-ups",
        json={"amount_khr": amount, "reference": "T-1"},
        headers=people.manager,
    )
    assert r.status_code == 422
    after = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
    assert after == fund


async def test_lists_and_the_ledger_page_with_cursors(
    api: httpx.AsyncClient, people: People
) -> None:
    fund = await make_fund(api, people, budget_khr=0)
    for i in range(5):
        r = await api.post(
            f"/v1/funds/funds/{fund['id']}/top-ups",
            json={"amount_khr": 1000 * (i + 1), "reference": f"T-{i}"},
            headers=people.manager,
        )
        assert r.status_code == 200
    seen: list[int] = []
    url = f"/v1/funds/funds/{fund['id']}/ledger?limit=2"
    while url:
        page = (await api.get(url, headers=people.manager)).json()
        seen += [e["amount_khr"] for e in page["items"]]
        cursor = page["next_cursor"]
        url = f"/v1/funds/funds/{fund['id']}/ledger?limit=2&cursor={cursor}" if cursor else ""
    assert seen == [1000, 2000, 3000, 4000, 5000]
    final = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
    assert (final["topped_up_khr"], final["available_khr"], final["version"]) == (15000, 15000, 6)

    # updated_since: only funds changed at or after the moment given
    since = final["updated_at"]
    r = await api.get(
        "/v1/funds/funds", params={"updated_since": since, "limit": 500}, headers=people.manager
    )
    assert fund["id"] in {f["id"] for f in r.json()["items"]}
    assert all(f["updated_at"] >= since for f in r.json()["items"])
