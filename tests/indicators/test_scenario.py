"""The scripted scenario (tests/indicators/scenario.py) and its indicators computed by hand."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from libs.common.events import CloudEvent
from services.indicators.store import bookkeeping, counting
from tests.indicators.conftest import DETAIL, NATIONAL_READ, caught_up, publish
from tests.indicators.scenario import DISTRICT_1201, A, B, C, D
from tests.support import SigningKeys

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def detail(api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]) -> Any:
    headers = keys.headers(areas=["KH"], scope=DETAIL)

    async def values(ind: str, period: str, area: str, level: str | None = None) -> dict:
        params = {"indicator": ind, "period": period, "area": area}
        if level:
            params["level"] = level
        r = await api.get("/v1/indicators/values", params=params, headers=headers)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert not any(i["suppressed"] for i in items)
        key = (
            (lambda i: i["disaggregation"])
            if level is None
            else (lambda i: (i["area"], i["disaggregation"]))
        )
        return {key(i): i["value"] for i in items if i["value"]}

    return values


async def snapshot(app: FastAPI) -> tuple[int, dict[Any, int]]:
    async with app.state.runtime.db.transaction() as conn:
        target = await bookkeeping.active_target(conn)
        return target.generation, await counting.nonzero_cells(conn, target.generation)


async def test_registrations_by_sex_and_age_at_each_periods_end(detail: Any) -> None:
    assert await detail("CP_CHILD_REG", "202501", A) == {"F_Y0_4": 1}
    assert await detail("CP_CHILD_REG", "202503", "12", "commune") == {
        (B, "F_Y10_14"): 1,
        (C, "M_Y15_17"): 1,
    }
    # child 2 is 14 at the end of February and 15 at the end of March (born March 2010)
    assert await detail("CP_CHILD_REG", "202502", A) == {"M_Y10_14": 1}
    assert await detail("CP_CHILD_REG", "2025Q1", "KH") == {
        "F_Y0_4": 1,
        "M_Y15_17": 2,
        "F_Y10_14": 1,
        "M_Y10_14": 1,
    }
    assert await detail("CP_CHILD_REG", "2025Q1", "12", "district") == {
        ("1201", "F_Y0_4"): 1,
        ("1201", "M_Y15_17"): 1,
        ("1201", "F_Y10_14"): 1,
        ("1202", "M_Y15_17"): 1,
    }
    # child 1 turns 5 in June: banded 5-9 for the year
    assert await detail("CP_CHILD_REG", "2025", "KH", "province") == {
        ("12", "F_Y5_9"): 1,
        ("12", "M_Y15_17"): 2,
        ("12", "F_Y10_14"): 1,
        ("17", "F_Y0_4"): 1,
        ("17", "M_Y10_14"): 1,
    }


async def test_case_stocks_at_period_end(detail: Any) -> None:
    assert await detail("CP_CASE_OPEN", "202503", "1201", "commune") == {
        (A, "F_Y0_4"): 1,
        (A, "M_Y15_17"): 1,
        (B, "F_Y10_14"): 1,
    }
    assert await detail("CP_CASE_OPEN", "2025Q1", "12") == {
        "F_Y0_4": 1,
        "M_Y15_17": 2,
        "F_Y10_14": 1,
    }
    # child 2's case closed at 00:30 on 1 April in Cambodia, reopened in June
    assert await detail("CP_CASE_OPEN", "202504", A) == {"F_Y0_4": 1}
    assert await detail("CP_CASE_OPEN", "202505", A) == {"F_Y0_4": 1}
    assert await detail("CP_CASE_OPEN", "202506", A) == {"F_Y5_9": 1, "M_Y15_17": 1}
    assert await detail("CP_CASE_OPEN", "2025", "KH", "province") == {
        ("12", "F_Y5_9"): 1,
        ("12", "M_Y15_17"): 1,
        ("12", "F_Y10_14"): 1,
        ("17", "F_Y0_4"): 1,
        ("17", "M_Y10_14"): 1,
    }
    assert await detail("CP_CASE_OPEN", "2025", "1202") == {}  # child 4 closed in August
    assert await detail("CP_CASE_HIGH_RISK", "202501", "KH") == {"F_Y0_4": 1}
    assert await detail("CP_CASE_HIGH_RISK", "202502", "KH") == {}
    assert await detail("CP_CASE_HIGH_RISK", "202503", "KH") == {"M_Y10_14": 1}
    assert await detail("CP_CASE_HIGH_RISK", "2025Q1", "KH", "province") == {("17", "M_Y10_14"): 1}
    assert await detail("CP_CASE_HIGH_RISK", "2025", "KH") == {"F_Y10_14": 1, "M_Y10_14": 1}
    assert await detail("CP_CHILD_VULN", "202503", "KH") == {
        "poor_household": 2,
        "violence": 1,
        "disability": 1,
        "out_of_school": 1,
        "child_labour": 1,
    }
    assert await detail("CP_CHILD_VULN", "202503", "1201", "commune") == {
        (A, "poor_household"): 1,
        (A, "violence"): 1,
        (B, "disability"): 1,
        (B, "out_of_school"): 1,
    }
    assert await detail("CP_CHILD_VULN", "2025", "KH") == {
        "poor_household": 2,
        "violence": 1,
        "disability": 1,
        "out_of_school": 1,
        "abandonment": 1,
    }


async def test_referral_flows(detail: Any) -> None:
    assert await detail("CP_REF_MADE", "202502", A) == {"education": 2}  # re-routed: twice
    assert await detail("CP_REF_MADE", "2025Q1", "KH") == {
        "health": 1,
        "education": 2,
        "psychosocial": 1,
    }
    # r4 was created at 01:00 on 1 April in Cambodia
    assert await detail("CP_REF_MADE", "202504", "KH", "province") == {
        ("12", "legal"): 1,
        ("17", "health"): 1,
    }
    assert await detail("CP_REF_MADE", "2025", "KH") == {
        "health": 2,
        "education": 2,
        "psychosocial": 1,
        "legal": 1,
    }
    assert await detail("CP_REF_ACCEPTED", "2025Q1", "KH") == {"health": 1, "education": 1}
    assert await detail("CP_REF_ACCEPTED", "2025", "KH") == {
        "health": 2,
        "education": 1,
        "legal": 1,
    }
    assert await detail("CP_REF_COMPLETED", "2025Q1", "1201") == {"health": 1}
    assert await detail("CP_REF_COMPLETED", "2025", "KH") == {"health": 2}
    # r3 went overdue at 23:30 on 31 March (flagged ten minutes into April): March
    assert await detail("CP_REF_OVERDUE", "202503", "KH") == {"psychosocial": 1}
    assert await detail("CP_REF_OVERDUE", "202504", "KH") == {"legal": 1}
    assert await detail("CP_REF_OVERDUE", "2025", "KH", "district") == {
        ("1201", "psychosocial"): 1,
        ("1202", "legal"): 1,
    }


async def test_referrals_that_found_no_provider(detail: Any) -> None:
    # child 1's shelter need in February, again in March (once per month); child 2's at
    # 00:30 on 1 March in Cambodia: March
    assert await detail("CP_REF_UNMATCHED", "202502", A) == {"shelter": 1}
    assert await detail("CP_REF_UNMATCHED", "202503", A) == {"shelter": 2}
    assert await detail("CP_REF_UNMATCHED", "202503", "KH") == {"shelter": 2, "legal": 1}
    assert await detail("CP_REF_UNMATCHED", "2025Q1", "1201", "commune") == {(A, "shelter"): 3}
    assert await detail("CP_REF_UNMATCHED", "2025Q1", "12", "district") == {
        ("1201", "shelter"): 3,
        ("1202", "legal"): 1,
    }
    assert await detail("CP_REF_UNMATCHED", "2025Q1", "12") == {"shelter": 3, "legal": 1}
    assert await detail("CP_REF_UNMATCHED", "2025", "KH", "province") == {
        ("12", "shelter"): 3,
        ("12", "legal"): 1,
        ("17", "shelter"): 1,
    }
    assert await detail("CP_REF_UNMATCHED", "202504", D) == {"shelter": 1}
    # no referral was made for them
    assert await detail("CP_REF_MADE", "202503", C) == {}


async def test_grant_flows(detail: Any) -> None:
    assert await detail("CP_GRANT_APPROVED", "202501", A) == {"emergency_disaster": 1}
    assert await detail("CP_GRANT_APPROVED", "2025Q1", "KH") == {
        "emergency_disaster": 2,
        "education_support": 1,
    }
    # approved then cancelled still counts as approved; rejected never does
    assert await detail("CP_GRANT_APPROVED", "2025", "KH") == {
        "emergency_disaster": 2,
        "education_support": 1,
        "material_support": 1,
    }
    assert await detail("CP_GRANT_DISBURSED", "202502", "KH") == {"emergency_disaster": 2}
    # g2 was reversed: disbursements are gross
    assert await detail("CP_GRANT_DISBURSED", "2025", "KH") == {
        "emergency_disaster": 2,
        "education_support": 1,
    }
    assert await detail("CP_GRANT_DISBURSED_KHR", "2025Q1", "KH") == {
        "emergency_disaster": 320_000,
        "education_support": 50_000,
    }
    assert await detail("CP_GRANT_DISBURSED_KHR", "202502", "KH", "province") == {
        ("12", "emergency_disaster"): 200_000,
        ("17", "emergency_disaster"): 120_000,
    }


async def test_providers_are_a_distinct_count(detail: Any) -> None:
    assert await detail("CP_PROVIDERS", "202501", "KH") == {"health": 3, "education": 1}
    assert await detail("CP_PROVIDERS", "202502", "KH") == {
        "health": 3,
        "education": 1,
        "legal": 1,
    }
    # the district-wide provider is one provider of the district, not five
    assert await detail("CP_PROVIDERS", "202502", "1201") == {
        "health": 2,
        "education": 1,
        "legal": 1,
    }
    by_commune = await detail("CP_PROVIDERS", "202502", "1201", "commune")
    assert by_commune[(A, "health")] == 2
    assert all(by_commune[(c, "health")] == 1 for c in DISTRICT_1201[1:])
    assert all(by_commune[(c, "legal")] == 1 for c in DISTRICT_1201)
    # p2 was deactivated in March
    assert await detail("CP_PROVIDERS", "2025Q1", "KH") == {
        "health": 2,
        "education": 1,
        "legal": 1,
    }
    assert await detail("CP_PROVIDERS", "2025", D) == {"health": 1, "legal": 1}
    assert await detail("CP_PROVIDERS", "202503", C) == {"legal": 1}


async def test_every_combo_is_answered_zeros_included(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    r = await api.get(
        "/v1/indicators/values",
        params={
            "indicator": "CP_CASE_OPEN",
            "period": "2025Q1",
            "area": "1201",
            "level": "commune",
        },
        headers=keys.headers(areas=["KH"], scope=DETAIL),
    )
    items = r.json()["items"]
    assert len(items) == len(DISTRICT_1201) * 8
    assert {i["area"] for i in items} == set(DISTRICT_1201)
    assert set(items[0]) == {
        "indicator",
        "period",
        "area",
        "disaggregation",
        "value",
        "suppressed",
        "rounded",
    }
    assert sum(i["value"] for i in items) == 3


async def test_events_delivered_twice_change_nothing(
    indicators_app: FastAPI,
    api: httpx.AsyncClient,
    keys: SigningKeys,
    own_nats: Any,
    loaded: list[CloudEvent],
) -> None:
    before = await snapshot(indicators_app)
    # The same events again under other message ids: the broker keeps both copies.
    await publish(own_nats.url, loaded, msg_suffix="-again")
    status = await caught_up(api, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    assert sum(s["last_sequence"] for s in status["streams"]) == 2 * len(loaded)
    assert await snapshot(indicators_app) == before


async def test_rebuild_gives_the_live_aggregates_cell_by_cell(
    indicators_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys, detail: Any
) -> None:
    generation, live = await snapshot(indicators_app)
    r = await api.post("/v1/indicators/rebuild", headers=keys.headers(areas=["KH"], scope=DETAIL))
    assert r.status_code == 403  # only admin may rebuild
    admin = keys.headers(areas=["KH"], scope="admin indicators:read")
    r = await api.post("/v1/indicators/rebuild", params={"wait": "true"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["generation"] == generation + 1
    rebuilt_generation, rebuilt = await snapshot(indicators_app)
    assert rebuilt_generation == generation + 1
    assert rebuilt == live
    assert len(live) > 100
    status = (await api.get("/v1/indicators/status", headers=admin)).json()
    assert status["generation"] == generation + 1
    assert status["rebuild"]["state"] == "active"
    # the live consumers go on into the new generation, skipping what it already has
    assert await detail("CP_CASE_OPEN", "2025Q1", "12") == {
        "F_Y0_4": 1,
        "M_Y15_17": 2,
        "F_Y10_14": 1,
    }


async def test_access_and_bad_input(
    api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    phnom_penh = keys.headers(areas=["12"], scope=NATIONAL_READ)

    async def get(headers: dict[str, str], **params: str) -> httpx.Response:
        base = {"indicator": "CP_CASE_OPEN", "period": "2025Q1", "area": "12"}
        return await api.get("/v1/indicators/values", params={**base, **params}, headers=headers)

    assert (await get(phnom_penh)).status_code == 200
    assert (await get(phnom_penh, area="1201", level="commune")).status_code == 200
    assert (await get(phnom_penh, area="17")).status_code == 403
    assert (await get(phnom_penh, area="KH")).status_code == 403
    assert (await get(keys.headers(areas=["KH"], scope="registry:read"))).status_code == 403
    for bad in (
        {"indicator": "CP_NOPE"},
        {"period": "2025-03"},
        {"period": "202513"},
        {"period": "2999"},  # the future
        {"area": "99"},
        {"area": "12010101"},  # villages: counted at their commune
        {"level": "village"},
        {"area": "1201", "level": "province"},
    ):
        r = await get(phnom_penh, **bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_nothing_stored_or_answered_names_a_child(
    indicators_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys, loaded: list[CloudEvent]
) -> None:
    from sqlalchemy import text

    async with indicators_app.state.runtime.db.transaction() as conn:
        columns = {
            r.column_name
            for r in await conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'indicators'"
                )
            )
        }
    for word in ("name", "birth_date", "reason", "note", "phone", "justification", "caregiver"):
        assert not [c for c in columns if word in c], word
    r = await api.get("/v1/indicators/catalog", headers=keys.headers(scope=NATIONAL_READ))
    doc = r.json()
    assert {i["code"] for i in doc["indicators"]} >= {
        "CP_CHILD_REG",
        "CP_CASE_OPEN",
        "CP_CASE_HIGH_RISK",
        "CP_CHILD_VULN",
        "CP_REF_MADE",
        "CP_REF_ACCEPTED",
        "CP_REF_COMPLETED",
        "CP_REF_OVERDUE",
        "CP_REF_UNMATCHED",
        "CP_GRANT_APPROVED",
        "CP_GRANT_DISBURSED",
        "CP_GRANT_DISBURSED_KHR",
        "CP_PROVIDERS",
    }
    unmatched = next(i for i in doc["indicators"] if i["code"] == "CP_REF_UNMATCHED")
    assert (unmatched["type"], unmatched["roll_up"]) == ("flow", "sum")
    assert unmatched["disaggregation"]["code"] == "SERVICE_TYPE"
    assert unmatched["counted_from"] == "referrals.referral.unmatched"
    assert "CP_REF_UNMATCHED" in doc["rounding"]["indicators"]
    for data_set in doc["data_sets"]:
        assert "CP_REF_UNMATCHED" in data_set["data_elements"]
    providers = next(i for i in doc["indicators"] if i["code"] == "CP_PROVIDERS")
    assert providers["roll_up"] == "distinct"
    assert providers["type"] == "stock"
    sex_age = next(i for i in doc["indicators"] if i["code"] == "CP_CHILD_REG")
    assert len(sex_age["category_option_combos"]) == 8
    assert "rounding to base 5" in doc["suppression"]
    assert doc["rounding"]["base"] == 5
    assert "CP_PROVIDERS" not in doc["rounding"]["indicators"]
