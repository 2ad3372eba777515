"""Small-cell rounding, identical in every answer; DHIS2 dataValueSets JSON/CSV and ADX."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import BaseModel, ConfigDict

from libs.common.events import CloudEvent
from services.indicators import catalogue, jetstream
from services.indicators.dates import Period, PeriodType
from tests.indicators.conftest import DETAIL, NATIONAL_READ
from tests.indicators.scenario import DISTRICT_1201, A
from tests.support import SigningKeys

pytestmark = pytest.mark.asyncio

PERIODS = ("202502", "202503", "2025Q1", "2025")
PROVINCES = ("12", "17")
ADX = "{urn:ihe:qrph:adx:2015}"


class DataValue(BaseModel):
    """DHIS2's DataValue as its Web API's OpenAPI document describes it (v41)."""

    model_config = ConfigDict(extra="forbid")
    dataElement: str
    period: str
    orgUnit: str
    categoryOptionCombo: str
    attributeOptionCombo: str
    value: str | None = None
    storedBy: str | None = None
    created: str | None = None
    lastUpdated: str | None = None
    comment: str | None = None
    followup: bool | None = None
    deleted: bool | None = None


class DataValueSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataSet: str | None = None
    completeDate: str | None = None
    period: str | None = None
    orgUnit: str | None = None
    attributeOptionCombo: str | None = None
    dataValues: list[DataValue]


async def rows(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    ind: str,
    period: str,
    area: str,
    level: str | None = None,
) -> list[dict[str, Any]]:
    params = {
        "indicator": ind,
        "period": period,
        "area": area,
        **({"level": level} if level else {}),
    }
    r = await api.get("/v1/indicators/values", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_every_count_is_rounded_to_five_and_every_total_adds_up(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    small = moved = 0
    for ind in catalogue.INDICATORS:
        for period in PERIODS:
            for province in PROVINCES:
                communes = await rows(api, public, ind.code, period, province, "commune")
                raw = await rows(api, detail, ind.code, period, province, "commune")
                districts = await rows(api, public, ind.code, period, province, "district")
                truth = {(r["area"], r["disaggregation"]): r["value"] for r in raw}
                assert not any(r["suppressed"] for r in communes + districts + raw)
                assert not any(r["rounded"] for r in raw)
                sums: dict[tuple[str, str], int] = defaultdict(int)
                for r in communes:
                    true_value = truth[(r["area"], r["disaggregation"])]
                    assert r["value"] is not None
                    if ind.code not in catalogue.ROUNDED:  # providers, workers: exact
                        assert not r["rounded"]
                        assert r["value"] == true_value
                        continue
                    assert r["rounded"]
                    if ind.code != "CP_GRANT_DISBURSED_KHR":
                        assert r["value"] % 5 == 0, r  # no count from 1 to 4 anywhere
                        # a base cell (a month, or a stock's last month) moves by less than
                        # 5, and 0 stays 0; a flow's quarter or year sums its months (their
                        # age bands at each month's end, so it is not compared here)
                        monthly = Period.parse(period).type is PeriodType.monthly
                        if monthly or ind.kind is catalogue.Kind.stock:
                            assert abs(r["value"] - true_value) < 5
                            assert true_value != 0 or r["value"] == 0
                    small += 1 <= true_value <= 4
                    moved += r["value"] != true_value
                    sums[(r["area"][:4], r["disaggregation"])] += r["value"]
                if ind.roll_up is catalogue.RollUp.sum:
                    for d in districts:
                        # a district is exactly the sum of its published communes
                        assert d["value"] == sums[(d["area"], d["disaggregation"])], d
    assert small > 50  # the scenario's values are all small
    assert moved > 50


async def test_rounding_does_not_depend_on_the_query_shape(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    table = await rows(api, public, "CP_CASE_OPEN", "202503", "1201", "commune")
    alone = await rows(api, public, "CP_CASE_OPEN", "202503", A)
    in_table = {r["disaggregation"]: r["value"] for r in table if r["area"] == A}
    assert {r["disaggregation"]: r["value"] for r in alone} == in_table
    assert in_table["F_Y0_4"] in (0, 5)  # A's single F_Y0_4 case
    assert in_table["M_Y0_4"] == 0  # zero stays zero
    # asked again, and again: the same cell rounds the same way (nothing to average)
    for _ in range(3):
        assert await rows(api, public, "CP_CASE_OPEN", "202503", "1201", "commune") == table
    # a flow's quarter is the sum of its published months; a stock's is its last month
    for place in (A, "1201", "KH"):
        quarter = await rows(api, public, "CP_REF_MADE", "2025Q1", place)
        months = [
            await rows(api, public, "CP_REF_MADE", m, place) for m in ("202501", "202502", "202503")
        ]
        for i, r in enumerate(quarter):
            assert r["value"] == sum(m[i]["value"] for m in months)
    stock_q = await rows(api, public, "CP_CASE_OPEN", "2025Q1", "1201", "commune")
    assert [r["value"] for r in stock_q] == [r["value"] for r in table]


async def test_referrals_that_found_no_provider_are_rounded_like_overdue_ones(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    for code in ("CP_REF_OVERDUE", "CP_REF_UNMATCHED"):
        assert code in catalogue.ROUNDED
        raw = await rows(api, detail, code, "202503", "1201", "commune")
        published = await rows(api, public, code, "202503", "1201", "commune")
        assert not any(r["rounded"] for r in raw)
        assert all(r["rounded"] and r["value"] % 5 == 0 for r in published)
        for r, truth in zip(published, raw, strict=True):
            assert abs(r["value"] - truth["value"]) < 5
        # a district is the sum of its published communes; a quarter of its months
        [district] = [
            r
            for r in await rows(api, public, code, "202503", "1201")
            if r["disaggregation"] == "shelter"
        ]
        assert district["value"] == sum(
            r["value"] for r in published if r["disaggregation"] == "shelter"
        )
        quarter = await rows(api, public, code, "2025Q1", "1201")
        months = [await rows(api, public, code, m, "1201") for m in ("202501", "202502", "202503")]
        for i, r in enumerate(quarter):
            assert r["value"] == sum(m[i]["value"] for m in months)
    raw = await rows(api, detail, "CP_REF_UNMATCHED", "202503", A)
    assert {r["disaggregation"]: r["value"] for r in raw if r["value"]} == {"shelter": 2}


async def test_detail_scope_sees_raw_values(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    table = await rows(api, detail, "CP_CASE_OPEN", "202503", "1201", "commune")
    assert not any(r["suppressed"] or r["rounded"] for r in table)
    assert {(r["area"], r["disaggregation"]) for r in table if r["value"] == 1} == {
        (A, "F_Y0_4"),
        (A, "M_Y15_17"),
        ("120109", "F_Y10_14"),
    }


def dvs_params(**extra: Any) -> dict[str, Any]:
    return {
        "dataSet": "CP_MONTHLY",
        "period": "202503",
        "orgUnit": "1201",
        "children": "true",
        **extra,
    }


async def test_data_value_sets_json_is_dhis2s_and_rounded_like_values(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    r = await api.get("/v1/indicators/dataValueSets", params=dvs_params(), headers=public)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = DataValueSet.model_validate(r.json())
    units = {"1201", *DISTRICT_1201}
    assert {v.orgUnit for v in doc.dataValues} == units
    assert len(doc.dataValues) == len(units) * sum(
        len(i.combo.combos) for i in catalogue.INDICATORS
    )
    by_key = {(v.dataElement, v.orgUnit, v.categoryOptionCombo): v for v in doc.dataValues}
    for ind in catalogue.INDICATORS:
        for row in await rows(api, public, ind.code, "202503", "1201", "commune"):
            value = by_key[(ind.code, row["area"], row["disaggregation"])]
            assert value.period == "202503"
            assert value.attributeOptionCombo == "default"
            assert value.value == str(row["value"])
            assert value.comment is None
    updated = [v.lastUpdated for v in doc.dataValues if v.lastUpdated]
    assert updated
    assert all(datetime.fromisoformat(u) <= datetime.now(UTC) for u in updated)
    # one data set, period and org unit: named on top, as DHIS2 does
    r = await api.get(
        "/v1/indicators/dataValueSets",
        params={"dataSet": "CP_QUARTERLY", "period": "2025Q1", "orgUnit": "12"},
        headers=public,
    )
    top = r.json()
    assert (top["dataSet"], top["period"], top["orgUnit"]) == ("CP_QUARTERLY", "2025Q1", "12")


async def test_data_value_sets_csv_has_dhis2s_columns(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    as_json = (
        await api.get("/v1/indicators/dataValueSets", params=dvs_params(), headers=public)
    ).json()["dataValues"]
    by_accept = await api.get(
        "/v1/indicators/dataValueSets",
        params=dvs_params(),
        headers={**public, "Accept": "text/csv"},
    )
    by_suffix = await api.get(
        "/v1/indicators/dataValueSets.csv", params=dvs_params(), headers=public
    )
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert by_accept.text == by_suffix.text
    lines = by_accept.text.splitlines()
    assert lines[0] == (
        "dataelement,period,orgunit,categoryoptioncombo,attributeoptioncombo,value,storedby,"
        "lastupdated,comment,followup,deleted"
    )
    parsed = list(csv.DictReader(io.StringIO(by_accept.text)))
    assert len(parsed) == len(as_json)
    for row, dv in zip(parsed, as_json, strict=True):
        assert row["dataelement"] == dv["dataElement"]
        assert row["orgunit"] == dv["orgUnit"]
        assert row["categoryoptioncombo"] == dv["categoryOptionCombo"]
        assert row["value"] == dv.get("value", "")
        assert row["comment"] == dv.get("comment", "")
        assert (row["followup"], row["deleted"]) == ("false", "false")


async def test_adx_is_namespaced_xml_with_categories_as_attributes(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    r = await api.get(
        "/v1/indicators/dataValueSets",
        params=dvs_params(period=["202502", "202503"]),
        headers={**public, "Accept": "application/adx+xml"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/adx+xml")
    assert r.content.startswith(b"<?xml")
    root = ET.fromstring(r.content)
    assert root.tag == f"{ADX}adx"
    datetime.strptime(root.attrib["exported"], "%Y-%m-%dT%H:%M:%SZ")
    groups = root.findall(f"{ADX}group")
    assert {(g.attrib["period"], g.attrib["dataSet"]) for g in groups} == {
        ("2025-02-01/P1M", "CP_MONTHLY"),
        ("2025-03-01/P1M", "CP_MONTHLY"),
    }
    assert len(groups) == 2 * 6  # two months x (district + five communes)
    as_json = (
        await api.get("/v1/indicators/dataValueSets", params=dvs_params(), headers=public)
    ).json()["dataValues"]
    expected = {
        (v["dataElement"], v["orgUnit"], v["categoryOptionCombo"]): v.get("value") for v in as_json
    }
    seen = 0
    for group in groups:
        if group.attrib["period"] != "2025-03-01/P1M":
            continue
        for dv in group.findall(f"{ADX}dataValue"):
            ind = catalogue.BY_CODE[dv.attrib["dataElement"]]
            categories = [c.code for c in ind.combo.categories]
            combo = "_".join(dv.attrib[c] for c in categories)
            value = expected[(ind.code, group.attrib["orgUnit"], combo)]
            assert dv.attrib["value"] == value
            assert dv.find(f"{ADX}annotation") is None
            seen += 1
    assert seen == len(expected)


async def test_data_value_sets_params_as_dhis2s(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    path = "/v1/indicators/dataValueSets"
    # DHIS2's own path below the base URL, and its .json suffix
    same = await api.get(
        "/v1/indicators/api/dataValueSets.json", params=dvs_params(), headers=public
    )
    assert same.json() == (await api.get(path, params=dvs_params(), headers=public)).json()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await api.get(path, params=dvs_params(lastUpdated=future), headers=public)
    assert r.json()["dataValues"] == []
    r = await api.get(path, params=dvs_params(lastUpdated="2020-01-01"), headers=public)
    assert len(r.json()["dataValues"]) > 0
    several = await api.get(
        path,
        params={
            "dataSet": "CP_MONTHLY",
            "period": ["202502", "202503"],
            "orgUnit": ["120101", "170101"],
        },
        headers=public,
    )
    assert {(v["period"], v["orgUnit"]) for v in several.json()["dataValues"]} == {
        ("202502", "120101"),
        ("202503", "120101"),
        ("202502", "170101"),
        ("202503", "170101"),
    }
    dates = await api.get(
        path,
        params={
            "dataSet": "CP_MONTHLY",
            "startDate": "2025-01-01",
            "endDate": "2025-03-31",
            "orgUnit": "12",
            "dataElement": "CP_REF_MADE",
        },
        headers=keys.headers(areas=["KH"], scope=DETAIL),
    )
    made = {(v["period"], v["categoryOptionCombo"]): v["value"] for v in dates.json()["dataValues"]}
    assert made[("202502", "education")] == "2"
    assert {p for p, _ in made} == {"202501", "202502", "202503"}
    for bad in (
        {"period": "2025Q1"},  # not a period of CP_MONTHLY
        {"dataSet": "CP_WEEKLY"},
        {"orgUnit": "9999"},
        {"idScheme": "uid"},
        {"period": "2999"},
    ):
        r = await api.get(path, params=dvs_params(**bad), headers=public)
        assert r.status_code == 422, (bad, r.text)
    r = await api.get(
        path,
        params=dvs_params(orgUnit="17"),
        headers=keys.headers(areas=["12"], scope=NATIONAL_READ),
    )
    assert r.status_code == 403


async def test_status_reports_lag_and_the_age_of_the_oldest_unapplied_event(
    own_nats: Any, loaded: list[CloudEvent]
) -> None:
    nc = await nats.connect(own_nats.url)
    try:
        js = nc.jetstream()
        await js.add_consumer(
            "FUNDS", ConsumerConfig(durable_name="probe", ack_policy=AckPolicy.EXPLICIT)
        )
        status = await jetstream.stream_status(js, "FUNDS", "probe")
        funds = [e for e in loaded if e.type.startswith("funds.")]
        assert status["last_sequence"] >= len(funds)
        assert status["last_applied_sequence"] == 0
        assert status["lag"] == status["last_sequence"]
        assert status["oldest_unapplied_age_seconds"] > 0
        ours = await jetstream.stream_status(js, "FUNDS", "indicators-funds")
        assert ours["lag"] == 0
        assert ours["oldest_unapplied_age_seconds"] is None
    finally:
        await nc.close()
