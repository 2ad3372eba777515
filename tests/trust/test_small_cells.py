"""Small counts of children, attacked through the gateway of a running platform.

A government caller registers children into the three communes of Kaeb district (2302,
Kep province) so that many commune cells hold 1 to 4 children. A ministry analyst with
`indicators:read` (no detail) then reads everything published about them — `values` for
every commune, the district, the province and KH, for the month, the quarter and the year,
and dataValueSets (JSON) for every month, quarter and the year of Kep and of KH — and:
- no count of children anywhere is 1 to 4, and `values` and dataValueSets agree;
- the attacker's audit (tests/indicators/audit.py: for each protected cell, the min and max
  over all non-negative base cells consistent with every number read, two LPs) finds the
  range of every protected cell includes 0 or a value of 5 or more;
- a caller with `indicators:read:detail` sees the exact counts.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any

import httpx

from libs.common import places
from services.indicators import catalogue, dates, geography, stocks
from services.indicators.dates import Period
from tests.indicators.audit import Base, Number, audit
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller

PROVINCE, DISTRICT = "23", "2302"  # Kep, Kaeb: three communes
CHILD_INDICATORS = ("CP_CHILD_REG", "CP_CASE_OPEN", "CP_CASE_HIGH_RISK", "CP_CHILD_VULN")
COUNTS = [
    i for i in catalogue.INDICATORS if i.code in catalogue.ROUNDED and i.code != catalogue.AMOUNT
]
DATA_SET_OF = {t: code for code, t in catalogue.DATA_SETS.items()}
# (commune, sex, birth year, risk, vulnerabilities, how many): mostly cells of 1 to 4
CHILDREN = [
    ("230201", "female", 2015, "high", ["poor_household"], 3),
    ("230201", "male", 2020, "low", ["disability"], 1),
    ("230202", "female", 2023, "medium", ["poor_household", "violence"], 2),
    ("230202", "male", 2014, "low", ["out_of_school"], 7),
    ("230203", "female", 2010, "high", ["child_labour"], 1),
    ("230203", "male", 2019, "medium", [], 4),
]


VILLAGE = {"230201": "23020101", "230202": "23020201", "230203": "23020301"}


async def register_children(gateway: httpx.AsyncClient, writer: Caller) -> None:
    for commune, sex, year, risk, vulnerabilities, n in CHILDREN:
        for _ in range(n):
            body = child_body(
                given_name=f"Small{secrets.token_hex(3)}",
                family_name=f"Cell{secrets.token_hex(3)}",
                sex=sex,
                birth_date=f"{year}-05-17",
                village_code=VILLAGE[commune],
                risk_level=risk,
                vulnerabilities=vulnerabilities,
            )
            r = await gateway.post("/v1/registry/children", json=body, headers=writer.headers)
            assert r.status_code == 201, r.text


def expected_registrations(month: int) -> Counter[tuple[str, str]]:
    """(commune, combo) -> children registered this month, by the catalogue's age bands."""
    out: Counter[tuple[str, str]] = Counter()
    for commune, sex, year, _, _, n in CHILDREN:
        band = stocks.age_band(dates.month_index(year, 5), month)
        out[(commune, f"{catalogue.SEXES[sex]}_{band}")] += n
    return out


async def values(
    gateway: httpx.AsyncClient,
    who: Caller,
    ind: str,
    period: str,
    area: str,
    level: str | None = None,
) -> list[dict[str, Any]]:
    params = {"indicator": ind, "period": period, "area": area}
    if level:
        params["level"] = level
    r = await gateway.get("/v1/indicators/values", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def data_values(
    gateway: httpx.AsyncClient, who: Caller, periods: list[Period]
) -> dict[tuple[str, str, str, str], int]:
    """Every data value of Kep (and its districts and communes) and of KH, for the periods:
    (indicator, period, place, combo) -> value."""
    out: dict[tuple[str, str, str, str], int] = {}
    by_set: dict[str, list[str]] = {}
    for p in periods:
        by_set.setdefault(DATA_SET_OF[p.type], []).append(p.code)
    for data_set, codes in by_set.items():
        for org_unit, children in ((PROVINCE, "true"), ("KH", "false")):
            r = await gateway.get(
                "/v1/indicators/dataValueSets",
                params={
                    "dataSet": data_set,
                    "period": codes,
                    "orgUnit": org_unit,
                    "children": children,
                },
                headers=who.headers,
            )
            assert r.status_code == 200, r.text
            for v in r.json()["dataValues"]:
                assert "value" in v, v  # nothing is withheld
                key = (v["dataElement"], v["period"], v["orgUnit"], v["categoryOptionCombo"])
                out[key] = int(v["value"])
    return out


async def test_no_small_count_can_be_learnt_from_everything_published(
    platform: Any, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    writer = await new_caller(
        gateway,
        admin_headers,
        scopes=["registry:read", "registry:write"],
        areas=[PROVINCE],
        org_type="government",
    )
    analyst = await new_caller(
        gateway, admin_headers, scopes=["indicators:read"], areas=["KH"], org_type="government"
    )
    detail = await new_caller(
        gateway,
        admin_headers,
        scopes=["indicators:read", "indicators:read:detail"],
        areas=["KH"],
        org_type="government",
    )
    await register_children(gateway, writer)
    month = dates.current_month()
    year = dates.year_month(month)[0]
    expected = expected_registrations(month)
    communes = places.children_at(DISTRICT, "commune")

    # the indicators have applied the registrations: the detail caller sees exact counts
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        rows = await values(
            gateway, detail, "CP_CHILD_REG", dates.month_code(month), DISTRICT, "commune"
        )
        seen = Counter({(r["area"], r["disaggregation"]): r["value"] for r in rows if r["value"]})
        if seen == expected or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.3)
    assert seen == expected
    assert not any(r["rounded"] for r in rows)
    assert sum(1 for v in expected.values() if 1 <= v <= 4) >= 4  # small cells exist

    periods = [
        *(Period.parse(dates.month_code(dates.month_index(year, m))) for m in range(1, 13)),
        *(Period.parse(f"{year}Q{q}") for q in range(1, 5)),
        Period.parse(str(year)),
    ]
    periods = [p for p in periods if p.first <= month]
    published = await data_values(gateway, analyst, periods)
    truth = await data_values(gateway, detail, periods)
    assert published.keys() == truth.keys()

    # 1. no count of children, referrals or grants is 1 to 4, anywhere (providers are not
    # about a child and stay exact; riel are not a count)
    counts = catalogue.ROUNDED - {catalogue.AMOUNT}
    small = [(k, v) for k, v in published.items() if k[0] in counts and 1 <= v <= 4]
    assert not small, small[:5]
    assert any(published[k] != truth[k] for k in truth)  # rounded, not exact

    # 2. values says the same as dataValueSets, and that it is rounded
    current = [p for p in periods if p.first <= month <= p.last]
    for ind in CHILD_INDICATORS:
        for p in current:
            for area, level in (
                (DISTRICT, "commune"),
                (DISTRICT, None),
                (PROVINCE, None),
                ("KH", None),
            ):
                for r in await values(gateway, analyst, ind, p.code, area, level):
                    assert r["rounded"]
                    assert r["suppressed"] is False
                    assert r["value"] == published[(ind, p.code, r["area"], r["disaggregation"])]

    # 3. the attacker's audit over every number read
    numbers, cells = audit_problem(published, truth, periods, communes, month)
    protected = list(dict.fromkeys(cells))  # a stock's quarter and year are its last month
    findings = audit(numbers, protected)
    recoverable = [f for f in findings if f.recoverable]
    print(
        f"\nsmall-cell audit through the API: {len(numbers)} published numbers, "
        f"{len(protected)} protected cells, {len(findings) * 2} LPs, "
        f"{len(recoverable)} recoverable"
    )
    assert len(protected) >= 10
    assert not recoverable, recoverable[:3]


def audit_problem(
    published: dict[tuple[str, str, str, str], int],
    truth: dict[tuple[str, str, str, str], int],
    periods: list[Period],
    district_communes: list[str],
    now: int,
) -> tuple[list[Number], list[tuple[frozenset[Base], int]]]:
    """The numbers read as sums of unknown base cells, and the protected cells.

    Unknowns: each commune of Kep by month, and the rest of the country by month (one
    unknown standing for its many base cells, with their width in the interval reading).
    """
    kep = places.children_at(PROVINCE, "commune")
    assert set(district_communes) <= set(kep)
    rest = "KH-rest"
    outside = len(places.all_communes()) - len(kep)
    numbers: list[Number] = []
    protected: list[tuple[frozenset[Base], int]] = []
    for (ind_code, period_code, place, combo), value in published.items():
        ind = catalogue.BY_CODE[ind_code]
        if ind_code not in {i.code for i in COUNTS}:
            continue
        period = Period.parse(period_code)
        months = period.months if ind.kind is catalogue.Kind.flow else [min(period.last, now)]
        months = [m for m in months if m <= now]
        inside = [c for c in kep if place == "KH" or c.startswith(place)]
        cells = {(ind_code, dates.month_code(m), c, combo) for m in months for c in inside}
        width = 4.0 * len(cells)
        if place == "KH":
            cells |= {(ind_code, dates.month_code(m), rest, combo) for m in months}
            width += 4.0 * outside * len(months)
        numbers.append(Number(frozenset(cells), value, width))
        true_value = truth[(ind_code, period_code, place, combo)]
        if len(place) == geography.COMMUNE_LENGTH and 1 <= true_value <= 4:
            protected.append((frozenset(cells), true_value))
    return numbers, protected
