"""The casework indicators (docs/api-guide.md#casework, issue 14) over the hand-computed scenario of
tests/indicators/casework_scenario.py: every new indicator at commune, district, province
and KH, exact (indicators:read:detail) and rounded; the reintegration path; duplicates; and
a rebuild giving the same values."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deploy.local.infra import EmbeddedNats
from libs.common.events import CloudEvent
from services.indicators import catalogue
from services.indicators.store import bookkeeping, counting
from tests.indicators.casework_scenario import (
    DISTRICT_A,
    DISTRICT_C,
    PROVINCE,
    A,
    C,
    first_followup_of_c5,
    scenario_events,
    worker,
)
from tests.indicators.conftest import DETAIL, NATIONAL_READ, caught_up, publish
from tests.support import SigningKeys, migration_drift

pytestmark = pytest.mark.asyncio

PLACES = (A, C, DISTRICT_A, DISTRICT_C, PROVINCE, "KH")
NEW = (
    "CP_WORKERS_ACTIVE",
    "CP_WORKERS_TRAINED",
    "CP_CASELOAD_OVER",
    "CP_CHILD_ASSIGNED",
    "CP_VISITS",
    "CP_VISIT_OVERDUE",
    "CP_CHILD_RESIDENTIAL",
    "CP_REINTEGRATED",
    "CP_REINTEGRATION_FOLLOWED",
)
PERIODS = ("202602", "202603", "202604", "202605", "202606", "2026Q1", "2026Q2", "2026")
CSW, NGO, SAW, CCWC = (
    "community_support_worker",
    "ngo_case_worker",
    "social_affairs_worker",
    "ccwc_focal_point",
)

Table = dict[str, dict[str, int]]  # place -> combo -> value (zeros left out)


def children(a: dict[str, int], c: dict[str, int]) -> Table:
    """A count of children (or visits) placed at their commune: district 1201 is commune A,
    district 1202 is commune C, province 12 and KH are A + C."""
    both = Counter(a)
    both.update(c)
    total = {k: v for k, v in both.items() if v}
    return {A: a, C: c, DISTRICT_A: a, DISTRICT_C: c, PROVINCE: total, "KH": total}


def roles(*names: str) -> dict[str, int]:
    return dict.fromkeys(names, 1)


# Computed by hand from the scenario's docstring. The stocks of a quarter are its last month.
JUNE_ASSIGNED = children({"M_Y15_17": 1, "F_Y10_14": 1}, {"F_Y0_4": 1, "M_Y5_9": 1})
JUNE_OVERDUE = children({}, {"M_Y5_9": 1})
JUNE_RESIDENTIAL = children({}, {"M_Y5_9": 1})
JUNE_FOLLOWED = children({"F_Y15_17": 1, "F_Y10_14": 1}, {"M_Y10_14": 1})
JUNE_ACTIVE = {
    A: roles(CSW, CCWC),
    C: roles(CCWC),
    DISTRICT_A: roles(CSW, CCWC),
    DISTRICT_C: roles(CCWC),
    PROVINCE: roles(CSW, CCWC),
    "KH": roles(CSW, CCWC),
}
JUNE_OVER = {place: roles(CCWC) for place in PLACES}  # w4 serves the whole province
EXPECTED: dict[tuple[str, str], Table] = {
    # active workers: status active and a contract current on the month's last day
    ("CP_WORKERS_ACTIVE", "202604"): {
        A: roles(CSW, SAW),
        C: roles(NGO, SAW),
        DISTRICT_A: roles(CSW, SAW),
        DISTRICT_C: roles(NGO, SAW),
        PROVINCE: roles(CSW, NGO, SAW),  # w3 serves A and C: one worker of the province
        "KH": roles(CSW, NGO, SAW),
    },
    ("CP_WORKERS_ACTIVE", "202605"): {
        A: roles(CSW, SAW, CCWC),
        C: roles(NGO, SAW, CCWC),
        DISTRICT_A: roles(CSW, SAW, CCWC),
        DISTRICT_C: roles(NGO, SAW, CCWC),
        PROVINCE: roles(CSW, NGO, SAW, CCWC),
        "KH": roles(CSW, NGO, SAW, CCWC),
    },
    ("CP_WORKERS_ACTIVE", "202606"): JUNE_ACTIVE,  # w2's contract ended, w3 inactive
    ("CP_WORKERS_ACTIVE", "2026Q2"): JUNE_ACTIVE,
    ("CP_WORKERS_TRAINED", "202604"): {
        A: roles(CSW),
        C: {},
        DISTRICT_A: roles(CSW),
        DISTRICT_C: {},
        PROVINCE: roles(CSW),
        "KH": roles(CSW),
    },
    ("CP_WORKERS_TRAINED", "202605"): {
        A: roles(CSW, CCWC),
        C: roles(NGO, CCWC),
        DISTRICT_A: roles(CSW, CCWC),
        DISTRICT_C: roles(NGO, CCWC),
        PROVINCE: roles(CSW, NGO, CCWC),
        "KH": roles(CSW, NGO, CCWC),
    },
    ("CP_WORKERS_TRAINED", "202606"): JUNE_ACTIVE,
    ("CP_WORKERS_TRAINED", "2026Q2"): JUNE_ACTIVE,
    ("CP_CASELOAD_OVER", "202604"): {place: {} for place in PLACES},
    ("CP_CASELOAD_OVER", "202605"): {
        A: roles(CSW),
        C: {},
        DISTRICT_A: roles(CSW),
        DISTRICT_C: {},
        PROVINCE: roles(CSW),
        "KH": roles(CSW),
    },
    ("CP_CASELOAD_OVER", "202606"): JUNE_OVER,
    ("CP_CASELOAD_OVER", "2026Q2"): JUNE_OVER,
    ("CP_CHILD_ASSIGNED", "202604"): children(
        {"F_Y5_9": 1, "M_Y10_14": 1}, {"F_Y0_4": 1, "M_Y15_17": 1}
    ),
    # c2 turned 15 in May
    ("CP_CHILD_ASSIGNED", "202605"): children(
        {"F_Y5_9": 1, "M_Y15_17": 1, "F_Y10_14": 1}, {"F_Y0_4": 1, "M_Y15_17": 1}
    ),
    # c1's assignment ended, c4's case closed (its assignment still active)
    ("CP_CHILD_ASSIGNED", "202606"): JUNE_ASSIGNED,
    ("CP_CHILD_ASSIGNED", "2026Q2"): JUNE_ASSIGNED,
    ("CP_VISITS", "202603"): children({"follow_up": 1}, {}),
    # v2 recorded on 2 May counts in April, the month of its date
    ("CP_VISITS", "202604"): children({"home_visit": 1, "school_visit": 1}, {"home_visit": 1}),
    ("CP_VISITS", "202605"): children({"home_visit": 1}, {"counselling": 1}),
    ("CP_VISITS", "202606"): children(
        {"follow_up": 2}, {"case_conference": 1, "home_visit": 1, "follow_up": 1}
    ),
    ("CP_VISITS", "2026Q2"): children(
        {"home_visit": 2, "school_visit": 1, "follow_up": 2},
        {"home_visit": 2, "counselling": 1, "case_conference": 1, "follow_up": 1},
    ),
    ("CP_VISIT_OVERDUE", "202604"): children({"M_Y10_14": 1}, {}),
    ("CP_VISIT_OVERDUE", "202605"): children({}, {"F_Y0_4": 1}),
    ("CP_VISIT_OVERDUE", "202606"): JUNE_OVERDUE,
    ("CP_VISIT_OVERDUE", "2026Q2"): JUNE_OVERDUE,
    ("CP_CHILD_RESIDENTIAL", "202603"): children(
        {"F_Y10_14": 1}, {"M_Y15_17": 1, "M_Y5_9": 1, "M_Y10_14": 1}
    ),
    # c7 reintegrated on 28 April
    ("CP_CHILD_RESIDENTIAL", "202604"): children({"F_Y10_14": 1}, {"M_Y15_17": 1, "M_Y5_9": 1}),
    # c5 reintegrated on 10 May
    ("CP_CHILD_RESIDENTIAL", "202605"): children({}, {"M_Y15_17": 1, "M_Y5_9": 1}),
    ("CP_CHILD_RESIDENTIAL", "202606"): JUNE_RESIDENTIAL,  # c4's case closed
    ("CP_CHILD_RESIDENTIAL", "2026Q2"): JUNE_RESIDENTIAL,
    ("CP_REINTEGRATED", "202602"): children({"F_Y15_17": 1}, {}),
    ("CP_REINTEGRATED", "2026Q1"): children({"F_Y15_17": 1}, {}),
    ("CP_REINTEGRATED", "202604"): children({}, {"M_Y10_14": 1}),
    ("CP_REINTEGRATED", "202605"): children({"F_Y10_14": 1}, {}),
    ("CP_REINTEGRATED", "202606"): children({}, {}),
    ("CP_REINTEGRATED", "2026Q2"): children({"F_Y10_14": 1}, {"M_Y10_14": 1}),
    # c8: first follow-up due 15 March, made 16 March
    ("CP_REINTEGRATION_FOLLOWED", "202603"): children({"F_Y15_17": 1}, {}),
    ("CP_REINTEGRATION_FOLLOWED", "202604"): children({"F_Y15_17": 1}, {}),
    # c8's third follow-up (due 15 May) not made; c7's first (due 28 May) not made; c5's
    # first not yet due nor made
    ("CP_REINTEGRATION_FOLLOWED", "202605"): children({}, {}),
    ("CP_REINTEGRATION_FOLLOWED", "202606"): JUNE_FOLLOWED,
    ("CP_REINTEGRATION_FOLLOWED", "2026Q2"): JUNE_FOLLOWED,
}


async def snapshot(app: FastAPI) -> tuple[int, dict[Any, int]]:
    async with app.state.runtime.db.transaction() as conn:
        target = await bookkeeping.active_target(conn)
        return target.generation, await counting.nonzero_cells(conn, target.generation)


@pytest.fixture(scope="module")
async def casework_loaded(
    indicators_app: FastAPI, own_nats: EmbeddedNats, keys: SigningKeys
) -> list[CloudEvent]:
    """The scenario without c5's first follow-up, published and applied.

    A read first rolls the (empty) stock cells forward to this month: every event is then
    applied live, each changing the cells by its deltas (a rebuild materialises them)."""
    events = scenario_events()
    transport = httpx.ASGITransport(app=indicators_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indicators") as client:
        headers = keys.headers(areas=["KH"], scope=NATIONAL_READ)
        params = {"indicator": "CP_CHILD_ASSIGNED", "period": "2026", "area": "KH"}
        r = await client.get("/v1/indicators/values", params=params, headers=headers)
        assert r.status_code == 200, r.text
        await publish(own_nats.url, events)
        await caught_up(client, headers)
    return events


@pytest.fixture(scope="module")
async def complete(
    casework_loaded: list[CloudEvent],
    indicators_app: FastAPI,
    own_nats: EmbeddedNats,
    keys: SigningKeys,
) -> list[CloudEvent]:
    """The whole scenario (c5's first follow-up too; published again it counts once)."""
    await publish(own_nats.url, [first_followup_of_c5()])
    transport = httpx.ASGITransport(app=indicators_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indicators") as client:
        await caught_up(client, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    return [*casework_loaded, first_followup_of_c5()]


@pytest.fixture
async def client(indicators_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=indicators_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indicators") as c:
        yield c


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


async def exact(
    api: httpx.AsyncClient, keys: SigningKeys, ind: str, period: str, area: str
) -> dict[str, int]:
    got = await rows(api, keys.headers(areas=["KH"], scope=DETAIL), ind, period, area)
    assert not any(r["suppressed"] or r["rounded"] for r in got)
    return {r["disaggregation"]: r["value"] for r in got if r["value"]}


async def test_reintegration_path(
    client: httpx.AsyncClient,
    keys: SigningKeys,
    own_nats: EmbeddedNats,
    casework_loaded: list[CloudEvent],
) -> None:
    """c5 moves from residential care to kinship on 10 May: counted reintegrated in May, no
    longer residential at May's end, followed up only once its first follow-up is made."""
    assert await exact(client, keys, "CP_REINTEGRATED", "202605", A) == {"F_Y10_14": 1}
    assert await exact(client, keys, "CP_CHILD_RESIDENTIAL", "202604", A) == {"F_Y10_14": 1}
    assert await exact(client, keys, "CP_CHILD_RESIDENTIAL", "202605", A) == {}
    assert await exact(client, keys, "CP_REINTEGRATION_FOLLOWED", "202606", A) == {
        "F_Y15_17": 1  # c8 only: c5's first follow-up (due 10 June) is not made
    }
    await publish(own_nats.url, [first_followup_of_c5()])
    await caught_up(client, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    assert await exact(client, keys, "CP_REINTEGRATION_FOLLOWED", "202606", A) == {
        "F_Y15_17": 1,
        "F_Y10_14": 1,
    }
    # a follow-up made in June does not reach back into May
    assert await exact(client, keys, "CP_REINTEGRATION_FOLLOWED", "202605", A) == {}


async def test_every_new_indicator_by_hand_at_every_level(
    client: httpx.AsyncClient, keys: SigningKeys, complete: list[CloudEvent]
) -> None:
    checked = set()
    for (ind, period), table in EXPECTED.items():
        for place in PLACES:
            got = await exact(client, keys, ind, period, place)
            assert got == table[place], (ind, period, place, got)
        checked.add(ind)
    assert checked == set(NEW)
    # KH holds nothing outside province 12; the new indicators are in the catalogue
    doc = (
        await client.get("/v1/indicators/catalog", headers=keys.headers(scope=NATIONAL_READ))
    ).json()
    by_code = {i["code"]: i for i in doc["indicators"]}
    for ind in NEW:
        assert by_code[ind]["definition"]
    for ind in ("CP_WORKERS_ACTIVE", "CP_WORKERS_TRAINED", "CP_CASELOAD_OVER"):
        assert by_code[ind]["roll_up"] == "distinct"
        assert ind not in doc["rounding"]["indicators"]
        assert len(by_code[ind]["category_option_combos"]) == 4
    for ind in NEW[3:]:
        assert ind in doc["rounding"]["indicators"]
    assert len(by_code["CP_VISITS"]["category_option_combos"]) == 6
    for data_set in doc["data_sets"]:
        assert set(NEW) <= set(data_set["data_elements"])


async def test_workers_count_at_every_commune_they_serve(
    client: httpx.AsyncClient, keys: SigningKeys, complete: list[CloudEvent]
) -> None:
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    by_commune = await rows(client, detail, "CP_WORKERS_ACTIVE", "202605", DISTRICT_C, "commune")
    communes = {r["area"] for r in by_commune}
    assert len(communes) > 1  # district 1202 has several communes
    for commune in communes:
        got = {r["disaggregation"]: r["value"] for r in by_commune if r["area"] == commune}
        # w2 serves the district and w4 the province: one of each at every commune of it
        expected = roles(NGO, CCWC, *((SAW,) if commune == C else ()))
        assert {k: v for k, v in got.items() if v} == expected, commune
    elsewhere = await rows(client, detail, "CP_WORKERS_ACTIVE", "202605", "17")
    assert not any(r["value"] for r in elsewhere)


async def test_rounded_for_principals_without_detail(
    client: httpx.AsyncClient, keys: SigningKeys, complete: list[CloudEvent]
) -> None:
    public = keys.headers(areas=["KH"], scope=NATIONAL_READ)
    detail = keys.headers(areas=["KH"], scope=DETAIL)
    for ind in NEW:
        for period in ("202604", "202605", "202606"):
            shown = await rows(client, public, ind, period, PROVINCE, "commune")
            truth = {
                (r["area"], r["disaggregation"]): r["value"]
                for r in await rows(client, detail, ind, period, PROVINCE, "commune")
            }
            districts = await rows(client, public, ind, period, PROVINCE, "district")
            whole = await rows(client, public, ind, period, PROVINCE)
            if ind not in catalogue.ROUNDED:  # workers: a distinct count, exact
                assert all(not r["rounded"] for r in shown)
                assert all(r["value"] == truth[(r["area"], r["disaggregation"])] for r in shown)
                continue
            sums: Counter[tuple[str, str]] = Counter()
            total: Counter[str] = Counter()
            for r in shown:
                true_value = truth[(r["area"], r["disaggregation"])]
                assert r["rounded"]
                assert not r["suppressed"]
                assert r["value"] % 5 == 0, r  # no count from 1 to 4
                assert abs(r["value"] - true_value) < 5
                assert true_value or r["value"] == 0
                sums[(r["area"][:4], r["disaggregation"])] += r["value"]
                total[r["disaggregation"]] += r["value"]
            for d in districts:
                assert d["value"] == sums[(d["area"], d["disaggregation"])], d
            for w in whole:
                assert w["value"] == total[w["disaggregation"]], w
    # dataValueSets (monthly and quarterly data sets) say the same as values
    for data_set, period in (("CP_MONTHLY", "202605"), ("CP_QUARTERLY", "2026Q2")):
        answer = await client.get(
            "/v1/indicators/dataValueSets",
            params={"dataSet": data_set, "period": period, "orgUnit": PROVINCE, "children": "true"},
            headers=public,
        )
        assert answer.status_code == 200, answer.text
        values = {
            (v["dataElement"], v["orgUnit"], v["categoryOptionCombo"]): v["value"]
            for v in answer.json()["dataValues"]
        }
        for ind in NEW:
            for place in (A, C, DISTRICT_A, DISTRICT_C, PROVINCE):
                for row in await rows(client, public, ind, period, place):
                    assert values[(ind, place, row["disaggregation"])] == str(row["value"])


async def test_a_worker_alone_in_a_batch_is_counted(
    client: httpx.AsyncClient,
    keys: SigningKeys,
    own_nats: EmbeddedNats,
    complete: list[CloudEvent],
) -> None:
    """A batch of worker events only (no child concerned) after the stock cells exist."""
    siem_reap = worker(
        "w5",
        1,
        "2026-04-02T03:00:00Z",
        role=NGO,
        areas=["17"],
        contracts=[("2026-01-01", None)],
        trainings=[("child_protection_basics", "2026-01-15")],
    )
    await publish(own_nats.url, [siem_reap])
    await caught_up(client, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    for period in ("202604", "202606", "2026Q2"):
        assert await exact(client, keys, "CP_WORKERS_ACTIVE", period, "17") == roles(NGO)
        assert await exact(client, keys, "CP_WORKERS_TRAINED", period, "17") == roles(NGO)
        assert (
            await exact(client, keys, "CP_WORKERS_ACTIVE", period, PROVINCE)
            == (EXPECTED[("CP_WORKERS_ACTIVE", period)][PROVINCE])
        )
    assert await exact(client, keys, "CP_WORKERS_ACTIVE", "202606", "KH") == roles(CSW, CCWC, NGO)
    assert await exact(client, keys, "CP_WORKERS_ACTIVE", "202603", "17") == {}


async def test_casework_events_delivered_twice_change_nothing(
    indicators_app: FastAPI,
    client: httpx.AsyncClient,
    keys: SigningKeys,
    own_nats: EmbeddedNats,
    complete: list[CloudEvent],
) -> None:
    before = await snapshot(indicators_app)
    values_before = await all_values(client, keys)
    casework = [e for e in complete if e.type.startswith("casework.")]
    await publish(own_nats.url, casework, msg_suffix="-again")
    status = await caught_up(client, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    stream = next(s for s in status["streams"] if s["stream"] == "CASEWORK")
    assert stream["consumer"] == "indicators-casework"
    assert stream["last_sequence"] >= 2 * len(casework)  # every copy was delivered
    assert await snapshot(indicators_app) == before
    assert await all_values(client, keys) == values_before


async def all_values(client: httpx.AsyncClient, keys: SigningKeys) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for scope in (DETAIL, NATIONAL_READ):
        headers = keys.headers(areas=["KH"], scope=scope)
        for ind in NEW:
            for period in PERIODS:
                for r in await rows(client, headers, ind, period, PROVINCE, "commune"):
                    out[(scope, ind, period, r["area"], r["disaggregation"])] = r["value"]
                for r in await rows(client, headers, ind, period, "KH"):
                    out[(scope, ind, period, "KH", r["disaggregation"])] = r["value"]
    return out


async def test_rebuild_reproduces_the_casework_indicators(
    indicators_app: FastAPI,
    client: httpx.AsyncClient,
    keys: SigningKeys,
    complete: list[CloudEvent],
) -> None:
    generation, live = await snapshot(indicators_app)
    before = await all_values(client, keys)
    assert sum(1 for v in before.values() if v) > 100
    admin = keys.headers(areas=["KH"], scope="admin indicators:read")
    r = await client.post("/v1/indicators/rebuild", params={"wait": "true"}, headers=admin)
    assert r.status_code == 200, r.text
    rebuilt_generation, rebuilt = await snapshot(indicators_app)
    assert rebuilt_generation == generation + 1
    assert rebuilt == live
    assert await all_values(client, keys) == before
    for (ind, period), table in EXPECTED.items():
        assert await exact(client, keys, ind, period, PROVINCE) == table[PROVINCE]


async def test_the_migrations_make_what_the_models_declare(
    indicators_app: FastAPI, own_db: str
) -> None:
    """Migration 0005 (care_setting and the casework projections) matches models.py."""
    from services.indicators import models

    assert await migration_drift(own_db, models.SCHEMA, models.metadata) == []
