"""Bounded indicator queries, attacked through the gateway of a running platform.

`dataValueSets` and `values` decide from the query's shape alone (periods x org units x
category option combos), before any work, whether it stays within 10 years of periods and
500,000 data values; beyond, 422 naming the limit. Dates and periods before 2000, and input
that does not parse, are 422 naming the field; nothing a client sends answers 500.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from tests.trust.conftest import Caller, new_caller

DVS = "/v1/indicators/dataValueSets"
VALUES = "/v1/indicators/values"


@pytest.fixture
async def analyst(gateway: httpx.AsyncClient, admin_headers: dict[str, str]) -> Caller:
    return await new_caller(
        gateway, admin_headers, scopes=["indicators:read"], areas=["KH"], org_type="government"
    )


def refused(r: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    """A 422 problem whose errors name the field, and whose detail says the words."""
    assert r.status_code == 422, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json")
    doc = dict(r.json())
    named = {e["field"].split(".")[0] for e in doc["errors"]}  # period.0: the first period
    assert field in named, doc
    for word in words:
        assert word in doc["detail"], (word, doc["detail"])
    return doc


async def still_answering(gateway: httpx.AsyncClient, who: Caller) -> None:
    r = await gateway.get("/v1/indicators/status", headers=who.headers)
    assert r.status_code == 200, r.text
    r = await gateway.get(
        DVS,
        headers=who.headers,
        params={"dataSet": "CP_MONTHLY", "period": "202601", "orgUnit": "2302"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["dataValues"]


async def test_a_national_pull_since_1990_is_refused_before_any_work(
    gateway: httpx.AsyncClient, analyst: Caller
) -> None:
    today = date.today().isoformat()
    national = {"dataSet": "CP_MONTHLY", "orgUnit": "KH", "children": "true", "endDate": today}
    r = await gateway.get(
        DVS, params={**national, "startDate": "1990-01-01"}, headers=analyst.headers, timeout=10
    )
    refused(r, "startDate", "2000-01-01")
    r = await gateway.get(
        DVS, params={**national, "startDate": "1899-12-31"}, headers=analyst.headers, timeout=10
    )
    refused(r, "startDate", "2000-01-01")
    # within the dates, more than 10 years of periods
    r = await gateway.get(
        DVS, params={**national, "startDate": "2005-01-01"}, headers=analyst.headers, timeout=10
    )
    refused(r, "startDate", "10 years")
    # within 10 years, more than 500,000 data values: a year of national monthly values
    r = await gateway.get(
        DVS,
        params={**national, "startDate": "2025-01-01", "endDate": "2025-12-31"},
        headers=analyst.headers,
        timeout=10,
    )
    refused(r, "startDate", "500,000 data values", "3,619,476")  # 12 × 301,623
    r = await gateway.get(
        DVS,
        params={
            "dataSet": "CP_MONTHLY",
            "orgUnit": "KH",
            "children": "true",
            "period": ["202501", "202502", "202503"],
        },
        headers=analyst.headers,
        timeout=10,
    )
    refused(r, "period", "500,000 data values")
    r = await gateway.get(
        DVS,
        params={"dataSet": "CP_YEARLY", "orgUnit": "KH", "period": ["2014", "2025"]},
        headers=analyst.headers,
        timeout=10,
    )
    refused(r, "period", "10 years")
    await still_answering(gateway, analyst)


async def test_a_far_end_date_costs_nothing_more(
    gateway: httpx.AsyncClient, analyst: Caller
) -> None:
    r = await gateway.get(
        DVS,
        params={
            "dataSet": "CP_YEARLY",
            "orgUnit": "2302",
            "startDate": "2020-01-01",
            "endDate": "9999-12-31",
        },
        headers=analyst.headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    years = {v["period"] for v in r.json()["dataValues"]}
    assert years == {str(y) for y in range(2020, date.today().year + 1)}


HOSTILE_DVS: list[tuple[dict[str, Any], str]] = [
    ({"period": "1999"}, "period"),
    ({"period": "199912"}, "period"),
    ({"period": "0000"}, "period"),
    ({"period": "2026\n"}, "period"),
    ({"period": "20\x0026"}, "period"),
    ({"period": "2026" * 1000}, "period"),
    ({"period": "９９９９"}, "period"),
    ({"orgUnit": "12\x00"}, "orgUnit"),
    ({"orgUnit": "-1"}, "orgUnit"),
    ({"orgUnit": "9" * 5000}, "orgUnit"),
    ({"lastUpdated": "2026-13-45"}, "lastUpdated"),
    ({"lastUpdated": "\x00"}, "lastUpdated"),
    ({"lastUpdated": "9" * 100}, "lastUpdated"),
    ({"lastUpdatedDuration": "9" * 40 + "d"}, "lastUpdatedDuration"),
    ({"lastUpdatedDuration": "-5d"}, "lastUpdatedDuration"),
    ({"lastUpdatedDuration": "١٢d"}, "lastUpdatedDuration"),
    ({"startDate": "-2020-01-01", "endDate": "2026-01-01", "period": None}, "startDate"),
    ({"startDate": "2020-01-01", "endDate": "99999-01-01", "period": None}, "endDate"),
    ({"startDate": "2026-02-30", "endDate": "2026-03-01", "period": None}, "startDate"),
    ({"startDate": "2026-01-01", "endDate": "1999-12-31", "period": None}, "endDate"),
    ({"startDate": "0", "endDate": "2026-01-01", "period": None}, "startDate"),
    ({"children": "maybe"}, "children"),
    ({"dataSet": "CP_MONTHLY\x00"}, "dataSet"),
    ({"dataElement": "CP_CHILD_REG'--"}, "dataElement"),
]


async def test_nothing_a_client_sends_answers_500(
    gateway: httpx.AsyncClient, analyst: Caller
) -> None:
    base = {"dataSet": "CP_MONTHLY", "period": "202601", "orgUnit": "2302"}
    for change, field in HOSTILE_DVS:
        params = {k: v for k, v in {**base, **change}.items() if v is not None}
        r = await gateway.get(DVS, params=params, headers=analyst.headers, timeout=10)
        assert r.status_code != 500, (change, r.text)
        refused(r, field)
    # a huge duration means everything since 2000: answered, within the limits
    r = await gateway.get(
        DVS, params={**base, "lastUpdatedDuration": "999999999999d"}, headers=analyst.headers
    )
    assert r.status_code == 200, r.text
    good = {"indicator": "CP_CHILD_REG", "period": "202601", "area": "2302"}
    for change, field in [
        ({"period": "1999"}, "period"),
        ({"period": "1899Q4"}, "period"),
        ({"period": "2026\x00"}, "period"),
        ({"area": "KH\x00"}, "area"),
        ({"indicator": "CP_\x00"}, "indicator"),
        ({"level": "village"}, "level"),
    ]:
        r = await gateway.get(VALUES, params={**good, **change}, headers=analyst.headers)
        assert r.status_code != 500, (change, r.text)
        refused(r, field)
    await still_answering(gateway, analyst)
