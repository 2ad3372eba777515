"""A partner importing its existing caseload through the gateway of a running platform: each
child keeps the date its case was opened (`registered_on`), and the ministry's numbers
count it in that month; dates no case can have are refused with a problem naming them."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import date, timedelta
from typing import Any

import httpx

from libs.common import clock, places
from services.indicators import dates
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller

DISTRICT = "0801"  # Kandal Stueng, Kandal: no other test registers children there
IMPORTED = 1000
MONTHS = 24  # the two years before this month, this month included


def caseload(today: date, communes: list[str]) -> tuple[list[dict[str, Any]], Counter[Any]]:
    """IMPORTED children opened on days spread over the last two years, and how many each
    (commune, month) should count."""
    rng = random.Random(20261203)
    first = dates.current_month() - (MONTHS - 1)
    items: list[dict[str, Any]] = []
    expected: Counter[tuple[str, int]] = Counter()
    for i in range(IMPORTED):
        year, month = dates.year_month(first + rng.randrange(MONTHS))
        opened = date(year, month, rng.randint(1, 28))
        opened = min(opened, today)
        commune = rng.choice(communes)
        born = opened - timedelta(days=rng.randint(30, 17 * 365))
        items.append(
            child_body(
                given_name=f"Import{i}",
                family_name="Caseload",
                sex=rng.choice(("female", "male")),
                birth_date=born.isoformat(),
                village_code=None,
                commune_code=commune,
                registered_on=opened.isoformat(),
                external_ids=[{"system": "oscar-test", "value": f"case-{i}"}],
            )
        )
        expected[(commune, dates.date_month(opened))] += 1
    return items, expected


async def registrations_by_month(
    gateway: httpx.AsyncClient, detail: Caller, months: list[int]
) -> Counter[tuple[str, int]]:
    """CP_CHILD_REG per (commune, month) of the district, exact (`indicators:read:detail`)."""
    seen: Counter[tuple[str, int]] = Counter()
    for month in months:
        r = await gateway.get(
            "/v1/indicators/values",
            params={
                "indicator": "CP_CHILD_REG",
                "period": dates.month_code(month),
                "area": DISTRICT,
                "level": "commune",
            },
            headers=detail.headers,
        )
        assert r.status_code == 200, r.text
        for row in r.json()["items"]:
            seen[(row["area"], month)] += row["value"]
    return +seen


async def test_an_imported_caseload_counts_in_the_months_its_cases_were_opened(
    platform: Any, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    partner = await new_caller(
        gateway, admin_headers, scopes=["registry:read", "registry:write"], areas=[DISTRICT]
    )
    detail = await new_caller(
        gateway,
        admin_headers,
        scopes=["indicators:read", "indicators:read:detail"],
        areas=["KH"],
        org_type="government",
    )
    communes = places.children_at(DISTRICT, "commune")
    items, expected = caseload(clock.today(), communes)
    for start in range(0, IMPORTED, 250):
        r = await gateway.post(
            "/v1/registry/children:batch",
            json={"items": items[start : start + 250]},
            headers=partner.headers,
        )
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["created"] * 250, r.text

    # each child reads back with the date it was opened
    r = await gateway.get(
        "/v1/registry/children",
        params={"commune_code": communes[0], "limit": 5},
        headers=partner.headers,
    )
    by_name = {i["given_name"]: i["registered_on"] for i in items}
    for child in r.json()["items"]:
        assert child["registered_on"] == by_name[child["given_name"]]

    months = sorted({m for _, m in expected})
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        seen = await registrations_by_month(gateway, detail, months)
        if seen == expected or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert seen == expected
    assert len(months) == MONTHS  # the import really spans the two years

    # rebuilding the indicators from the events gives the same months
    r = await gateway.post("/v1/indicators/rebuild", params={"wait": "true"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert await registrations_by_month(gateway, detail, months) == expected

    # a re-sync of the same cases is recognised, not counted again
    r = await gateway.post(
        "/v1/registry/children:batch", json={"items": items[:50]}, headers=partner.headers
    )
    assert [x["status"] for x in r.json()["results"]] == ["existing"] * 50


async def test_a_date_no_case_can_have_is_refused_naming_it(
    platform: Any, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    partner = await new_caller(
        gateway, admin_headers, scopes=["registry:read", "registry:write"], areas=[DISTRICT]
    )
    commune = places.children_at(DISTRICT, "commune")[0]
    today = clock.today()

    def child(registered_on: str, birth_date: str = "2015-04-12") -> dict[str, Any]:
        return child_body(
            village_code=None,
            commune_code=commune,
            birth_date=birth_date,
            registered_on=registered_on,
        )

    refused = {
        "before its birth": (child("2015-04-11"), "birth_date"),
        "before 2000": (child("1999-12-31", birth_date="1999-06-01"), "registered_on"),
        "in the future": (child((today + timedelta(days=1)).isoformat()), "registered_on"),
        "at 18 on that date": (child("2024-01-10", birth_date="2006-01-10"), "birth_date"),
        "not a date": (child("2025-02-30"), "registered_on"),
    }
    for why, (body, field) in refused.items():
        r = await gateway.post("/v1/registry/children", json=body, headers=partner.headers)
        assert r.status_code == 422, (why, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (why, r.text)

    # in a batch, each bad item is refused alone and the good one is registered
    r = await gateway.post(
        "/v1/registry/children:batch",
        json={"items": [body for body, _ in refused.values()] + [child("2020-01-01")]},
        headers=partner.headers,
    )
    assert r.status_code == 200, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["error"] * len(refused) + ["created"]

    # the age rule applies on the date the case was opened: 16 then, 20 now
    r = await gateway.post(
        "/v1/registry/children",
        json=child("2022-06-01", birth_date="2006-03-01"),
        headers=partner.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["registered_on"] == "2022-06-01"
    # not given: today
    body = child("2020-01-01")
    del body["registered_on"]
    r = await gateway.post("/v1/registry/children", json=body, headers=partner.headers)
    assert r.status_code == 201, r.text
    assert r.json()["registered_on"] == clock.today().isoformat()
