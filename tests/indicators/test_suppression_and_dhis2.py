"""Small-cell suppression, identical in every answer; DHIS2 dataValueSets JSON/CSV and ADX."""

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
from services.indicators import domain, service
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
    api: httpx.AsyncClient, headers: dict[str, str], ind: str, period: str, area: str,
    level: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    params = {
        "indicator": ind,
        "period": period,
        "area": area,
        **({"level": level} if level else {}),
    }
    r = await api.get("/v1/indicators/values", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_no_small_cell_is_visible_or_derivable_by_subtraction(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    suppressed_total = 0
    for ind in domain.INDICATORS:
        for period in PERIODS:
            for province in PROVINCES:
                communes = await rows(api, public, ind.code, period, province, "commune")
                raw = await rows(api, detail, ind.code, period, province, "commune")
                districts = await rows(api, public, ind.code, period, province, "district")
                truth = {(r["area"], r["disaggregation"]): r["value"] for r in raw}
                assert not any(r["suppressed"] for r in districts)
                groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
                for r in communes:
                    true_value = truth[(r["area"], r["disaggregation"])]
                    if r["suppressed"]:
                        assert r["value"] is None
                        suppressed_total += 1
                    else:
                        assert r["value"] == true_value
                        assert not 1 <= r["value"] <= 4, r  # no small value is visible
                    groups[(r["area"][:4], r["disaggregation"])].append(r)
                parents = {(r["area"], r["disaggregation"]): r["value"] for r in districts}
                for (district, combo), siblings in groups.items():
                    hidden = [s for s in siblings if s["suppressed"]]
                    assert len(hidden) != 1, (ind.code, period, district, combo)
                    if ind.roll_up is domain.RollUp.sum:
                        gap = parents[(district, combo)] - sum(
                            s["value"] for s in siblings if not s["suppressed"]
                        )
                        # parent minus published children is the hidden cells' sum, never one
                        assert gap == sum(truth[(s["area"], combo)] for s in hidden)
                if ind.code == "CP_GRANT_DISBURSED_KHR":
                    count = await rows(api, public, "CP_GRANT_DISBURSED", period, province,
                                       "commune")  # fmt: skip
                    hidden_counts = {(r["area"], r["disaggregation"]) for r in count
                                     if r["suppressed"]}  # fmt: skip
                    hidden_khr = {(r["area"], r["disaggregation"]) for r in communes
                                  if r["suppressed"]}  # fmt: skip
                    assert hidden_counts <= hidden_khr
    assert suppressed_total > 50  # the scenario's values are all small


async def test_suppression_does_not_depend_on_the_query_shape(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    table = await rows(api, public, "CP_CASE_OPEN", "202503", "1201", "commune")
    alone = await rows(api, public, "CP_CASE_OPEN", "202503", A)
    in_table = {r["disaggregation"]: (r["value"], r["suppressed"]) for r in table
                if r["area"] == A}  # fmt: skip
    assert {r["disaggregation"]: (r["value"], r["suppressed"]) for r in alone} == in_table
    assert in_table["F_Y0_4"] == (None, True)
    # A's single F_Y0_4 case is hidden with one zero sibling (the lowest other commune code)
    hidden = [r["area"] for r in table if r["disaggregation"] == "F_Y0_4" and r["suppressed"]]
    assert hidden == [A, DISTRICT_1201[1]]
    # zero stays zero where nothing forces it
    assert in_table["M_Y0_4"] == (0, False)


async def test_detail_scope_sees_raw_values(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    table = await rows(api, detail, "CP_CASE_OPEN", "202503", "1201", "commune")
    assert not any(r["suppressed"] for r in table)
    assert {(r["area"], r["disaggregation"]) for r in table if r["value"] == 1} == {
        (A, "F_Y0_4"), (A, "M_Y15_17"), ("120109", "F_Y10_14"),
    }  # fmt: skip


def dvs_params(**extra: Any) -> dict[str, Any]:
    return {"dataSet": "CP_MONTHLY", "period": "202503", "orgUnit": "1201", "children": "true",
            **extra}  # fmt: skip


async def test_data_value_sets_json_is_dhis2s_and_suppressed_like_values(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    r = await api.get("/v1/indicators/dataValueSets", params=dvs_params(), headers=public)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = DataValueSet.model_validate(r.json())
    units = {"1201", *DISTRICT_1201}
    assert {v.orgUnit for v in doc.dataValues} == units
    assert len(doc.dataValues) == len(units) * sum(len(i.combo.combos) for i in domain.INDICATORS)
    by_key = {(v.dataElement, v.orgUnit, v.categoryOptionCombo): v for v in doc.dataValues}
    for ind in domain.INDICATORS:
        for row in await rows(api, public, ind.code, "202503", "1201", "commune"):
            value = by_key[(ind.code, row["area"], row["disaggregation"])]
            assert value.period == "202503"
            assert value.attributeOptionCombo == "default"
            if row["suppressed"]:
                assert value.value is None
                assert "suppressed" in (value.comment or "")
            else:
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
    as_json = (await api.get("/v1/indicators/dataValueSets", params=dvs_params(),
                             headers=public)).json()["dataValues"]  # fmt: skip
    by_accept = await api.get(
        "/v1/indicators/dataValueSets", params=dvs_params(),
        headers={**public, "Accept": "text/csv"},
    )  # fmt: skip
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
        "/v1/indicators/dataValueSets", params=dvs_params(period=["202502", "202503"]),
        headers={**public, "Accept": "application/adx+xml"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/adx+xml")
    assert r.content.startswith(b"<?xml")
    root = ET.fromstring(r.content)
    assert root.tag == f"{ADX}adx"
    datetime.strptime(root.attrib["exported"], "%Y-%m-%dT%H:%M:%SZ")
    groups = root.findall(f"{ADX}group")
    assert {(g.attrib["period"], g.attrib["dataSet"]) for g in groups} == {
        ("2025-02-01/P1M", "CP_MONTHLY"), ("2025-03-01/P1M", "CP_MONTHLY"),
    }  # fmt: skip
    assert len(groups) == 2 * 6  # two months x (district + five communes)
    as_json = (await api.get("/v1/indicators/dataValueSets", params=dvs_params(),
                             headers=public)).json()["dataValues"]  # fmt: skip
    expected = {
        (v["dataElement"], v["orgUnit"], v["categoryOptionCombo"]): v.get("value") for v in as_json
    }
    seen = 0
    for group in groups:
        if group.attrib["period"] != "2025-03-01/P1M":
            continue
        for dv in group.findall(f"{ADX}dataValue"):
            ind = domain.BY_CODE[dv.attrib["dataElement"]]
            categories = [c.code for c in ind.combo.categories]
            combo = "_".join(dv.attrib[c] for c in categories)
            value = expected[(ind.code, group.attrib["orgUnit"], combo)]
            if value is None:
                assert "value" not in dv.attrib
                assert "suppressed" in dv.find(f"{ADX}annotation").text  # type: ignore[union-attr]
            else:
                assert dv.attrib["value"] == value
            seen += 1
    assert seen == len(expected)


async def test_data_value_sets_params_as_dhis2s(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    path = "/v1/indicators/dataValueSets"
    # DHIS2's own path below the base URL, and its .json suffix
    same = await api.get("/v1/indicators/api/dataValueSets.json", params=dvs_params(),
                         headers=public)  # fmt: skip
    assert same.json() == (await api.get(path, params=dvs_params(), headers=public)).json()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await api.get(path, params=dvs_params(lastUpdated=future), headers=public)
    assert r.json()["dataValues"] == []
    r = await api.get(path, params=dvs_params(lastUpdated="2020-01-01"), headers=public)
    assert len(r.json()["dataValues"]) > 0
    several = await api.get(
        path, params={"dataSet": "CP_MONTHLY", "period": ["202502", "202503"],
                      "orgUnit": ["120101", "170101"]}, headers=public,
    )  # fmt: skip
    assert {(v["period"], v["orgUnit"]) for v in several.json()["dataValues"]} == {
        ("202502", "120101"), ("202503", "120101"), ("202502", "170101"), ("202503", "170101"),
    }  # fmt: skip
    dates = await api.get(
        path, params={"dataSet": "CP_MONTHLY", "startDate": "2025-01-01", "endDate": "2025-03-31",
                      "orgUnit": "12", "dataElement": "CP_REF_MADE"}, headers=public,
    )  # fmt: skip
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
    r = await api.get(path, params=dvs_params(orgUnit="17"),
                      headers=keys.headers(areas=["12"], scope=NATIONAL_READ))  # fmt: skip
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
        status = await service.stream_status(js, "FUNDS", "probe")
        funds = [e for e in loaded if e.type.startswith("funds.")]
        assert status["last_sequence"] >= len(funds)
        assert status["last_applied_sequence"] == 0
        assert status["lag"] == status["last_sequence"]
        assert status["oldest_unapplied_age_seconds"] > 0
        ours = await service.stream_status(js, "FUNDS", "indicators-funds")
        assert ours["lag"] == 0
        assert ours["oldest_unapplied_age_seconds"] is None
    finally:
        await nc.close()
