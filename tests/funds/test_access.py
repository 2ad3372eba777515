"""Object-level access on every funds endpoint that takes an id: not visible means 404,
as if absent (docs/api-guide.md#access)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from tests.funds.conftest import (
    TONLE_BASAK,
    People,
    add_children,
    fund_body,
    grant_body,
    make_fund,
    make_grant,
    publish,
    referral_event,
    wait_processed,
)
from tests.support import ALL_SCOPES

FUND_ENDPOINTS = [
    ("GET", "/v1/funds/funds/{fund}", None),
    ("POST", "/v1/funds/funds/{fund}/top-ups", {"amount_khr": 1000, "reference": "T-9"}),
    ("GET", "/v1/funds/funds/{fund}/ledger", None),
    ("GET", "/v1/funds/reconciliation?fund_id={fund}", None),
]
GRANT_ENDPOINTS = [
    ("GET", "/v1/funds/grants/{grant}", None),
    ("POST", "/v1/funds/grants/{grant}/approve", None),
    ("POST", "/v1/funds/grants/{grant}/reject", {"reason": "no"}),
    ("POST", "/v1/funds/grants/{grant}/disburse", {"method": "cash", "reference": "P-9"}),
    ("POST", "/v1/funds/grants/{grant}/cancel", None),
    ("POST", "/v1/funds/grants/{grant}/reverse", {"reason": "error"}),
]


async def setup(api: httpx.AsyncClient, app: FastAPI, bus: EventBus, people: People) -> dict:
    [child] = await add_children(app, bus)
    fund = await make_fund(api, people)
    grant = await make_grant(api, people, fund["id"], child)
    return {"fund": fund["id"], "grant": grant["id"], "child": child}


async def call(api: httpx.AsyncClient, method: str, path: str, body: object, h: dict):
    return await api.request(method, path, json=body, headers=h)


@pytest.mark.parametrize(("method", "path", "body"), FUND_ENDPOINTS + GRANT_ENDPOINTS)
async def test_principal_of_another_commune_gets_404(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    method: str,
    path: str,
    body: object,
) -> None:
    ids = await setup(api, funds_app, registry_bus, people)
    other = people.h("other", areas=["120109"], scope=ALL_SCOPES)
    r = await call(api, method, path.format(**ids), body, other)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    missing = {"fund": str(uuid.uuid4()), "grant": str(uuid.uuid4())}
    absent = await call(api, method, path.format(**missing), body, other)
    assert absent.status_code == 404
    assert absent.json()["detail"] == r.json()["detail"]  # indistinguishable
    # and nothing happened to the grant or the fund
    grant = (await api.get(f"/v1/funds/grants/{ids['grant']}", headers=people.manager)).json()
    assert (grant["status"], grant["version"]) == ("requested", 1)
    fund = (await api.get(f"/v1/funds/funds/{ids['fund']}", headers=people.manager)).json()
    assert fund["version"] == 1


@pytest.mark.parametrize(("method", "path", "body"), GRANT_ENDPOINTS)
async def test_partner_that_cannot_see_the_child_gets_404(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    method: str,
    path: str,
    body: object,
) -> None:
    ids = await setup(api, funds_app, registry_bus, people)  # a government-registered child
    partner = people.h("ngo", org="ngo-b", org_type="partner", areas=["120101"], scope=ALL_SCOPES)
    r = await call(api, method, path.format(**ids), body, partner)
    assert r.status_code == 404, r.text


async def test_partners_see_their_own_childrens_grants_only(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    org = f"ngo-{people.tag}"
    [theirs] = await add_children(funds_app, registry_bus, owner_org=org)
    [government] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    partner = people.h(
        "ngo", org=org, org_type="partner", areas=["120101"], scope="funds:read funds:request"
    )
    r = await api.post("/v1/funds/grants", json=grant_body(fund["id"], theirs), headers=partner)
    assert r.status_code == 201, r.text
    refused = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], government), headers=partner
    )
    assert refused.status_code == 404
    assert refused.json()["detail"] == "no such child"
    await make_grant(api, people, fund["id"], government)
    listed = await api.get(f"/v1/funds/grants?fund_id={fund['id']}", headers=partner)
    assert [g["child_id"] for g in listed.json()["items"]] == [theirs]
    everyone = await api.get(f"/v1/funds/grants?fund_id={fund['id']}", headers=people.manager)
    assert {g["child_id"] for g in everyone.json()["items"]} == {theirs, government}


async def test_a_child_of_another_commune_cannot_be_asked_for(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    other = people.h("other", areas=["120109"], scope="funds:request")
    r = await api.post("/v1/funds/grants", json=grant_body(fund["id"], child), headers=other)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "scope"),
    [
        ("/v1/funds/grants/{grant}/approve", None, "funds:read funds:request funds:disburse"),
        ("/v1/funds/grants/{grant}/reject", {"reason": "x"}, "funds:read funds:request"),
        (
            "/v1/funds/grants/{grant}/disburse",
            {"method": "cash", "reference": "R"},
            "funds:approve",
        ),
        ("/v1/funds/grants/{grant}/reverse", {"reason": "x"}, "funds:approve funds:disburse"),
        ("/v1/funds/grants/{grant}/cancel", None, "funds:read funds:approve"),
        ("/v1/funds/funds/{fund}/top-ups", {"amount_khr": 1, "reference": "R"}, "funds:read"),
        ("/v1/funds/grants", {}, "funds:read funds:approve"),
    ],
)
async def test_missing_scope_is_403(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    path: str,
    body: object,
    scope: str,
) -> None:
    ids = await setup(api, funds_app, registry_bus, people)
    if path == "/v1/funds/grants":
        body = grant_body(ids["fund"], ids["child"], category="medical_transport")
    h = people.h("scoped", areas=["120101"], scope=scope)
    r = await api.post(path.format(**ids), json=body, headers=h)
    assert r.status_code == 403, r.text
    assert "missing scope" in r.json()["detail"]


async def test_reads_need_funds_read(api: httpx.AsyncClient, people: People) -> None:
    h = people.h("writer", areas=["12"], scope="funds:request funds:approve")
    for path in ("/v1/funds/funds", "/v1/funds/grants"):
        assert (await api.get(path, headers=h)).status_code == 403
    assert (await api.get("/v1/funds/funds")).status_code == 401


async def test_a_partner_with_an_active_referral_may_request_a_grant(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    referrals_bus: EventBus,
    people: People,
) -> None:
    [child] = await add_children(funds_app, registry_bus)  # registered by government
    fund = await make_fund(api, people)
    clinic = f"clinic-{people.tag}"
    partner = people.h(
        "clinic", org=clinic, org_type="partner", areas=["1201"], scope="funds:read funds:request"
    )
    body = grant_body(fund["id"], child, category="medical_transport")
    assert (await api.post("/v1/funds/grants", json=body, headers=partner)).status_code == 404

    referral = str(uuid.uuid4())
    accepted = referral_event(child, clinic, "accepted", 2, referral)
    await publish(referrals_bus, [accepted])
    await wait_processed(funds_app, [accepted.id])
    r = await api.post("/v1/funds/grants", json=body, headers=partner)
    assert r.status_code == 201, r.text
    assert (await api.get(f"/v1/funds/grants/{r.json()['id']}", headers=partner)).status_code == 200

    cancelled = referral_event(child, clinic, "cancelled", 3, referral)
    await publish(referrals_bus, [cancelled])
    await wait_processed(funds_app, [cancelled.id])
    again = grant_body(fund["id"], child, category="education_support")
    assert (await api.post("/v1/funds/grants", json=again, headers=partner)).status_code == 404


async def test_a_completed_referral_lets_its_provider_ask_for_30_days(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    referrals_bus: EventBus,
    people: People,
) -> None:
    recent, old = await add_children(funds_app, registry_bus, n=2)
    fund = await make_fund(api, people)
    clinic = f"clinic-{people.tag}"
    partner = people.h(
        "clinic", org=clinic, org_type="partner", areas=["1201"], scope="funds:read funds:request"
    )
    events = [
        referral_event(recent, clinic, "completed", 3),
        referral_event(old, clinic, "completed", 3),
    ]
    events[1] = events[1].model_copy(update={"time": events[1].time - timedelta(days=31)})
    await publish(referrals_bus, events)
    await wait_processed(funds_app, [e.id for e in events])
    ok = await api.post("/v1/funds/grants", json=grant_body(fund["id"], recent), headers=partner)
    assert ok.status_code == 201, ok.text
    late = await api.post("/v1/funds/grants", json=grant_body(fund["id"], old), headers=partner)
    assert late.status_code == 404


async def test_a_funds_books_need_its_whole_area(api: httpx.AsyncClient, people: People) -> None:
    district_fund = await make_fund(api, people, commune_code="1201")
    paths = [
        f"/v1/funds/funds/{district_fund['id']}/ledger",
        f"/v1/funds/reconciliation?fund_id={district_fund['id']}",
    ]
    commune_staff = people.h("ccwc", areas=[TONLE_BASAK], scope="funds:read")
    partner = people.h(
        "ngo", org="ngo-b", org_type="partner", areas=[TONLE_BASAK], scope="funds:read"
    )
    district = people.h("district", areas=["1201"], scope="funds:read")
    for who in (commune_staff, partner):
        assert (
            await api.get(f"/v1/funds/funds/{district_fund['id']}", headers=who)
        ).status_code == 200
        for path in paths:
            r = await api.get(path, headers=who)
            assert r.status_code == 403, r.text
            assert "whole area" in r.json()["detail"]
    for path in paths:
        assert (await api.get(path, headers=district)).status_code == 200
        assert (
            await api.get(path, headers=people.h("far", areas=["1202"], scope="funds:read"))
        ).status_code == 404


async def test_the_listed_commune_owns_an_anomalous_village(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    # 02140408 is listed under 021405, though its code names 021404
    [child] = await add_children(funds_app, registry_bus, village="02140408", commune="021405")
    manager = people.h("manager-02", areas=["02"], scope="funds:read funds:manage funds:request")
    r = await api.post("/v1/funds/funds", json=fund_body(commune_code="021405"), headers=manager)
    assert r.status_code == 201, r.text
    listed_fund = r.json()
    r = await api.post("/v1/funds/funds", json=fund_body(commune_code="021404"), headers=manager)
    named_fund = r.json()
    listed = people.h("listed", areas=["021405"], scope="funds:read funds:request")
    named = people.h("named", areas=["021404"], scope="funds:read funds:request")
    ok = await api.post(
        "/v1/funds/grants", json=grant_body(listed_fund["id"], child), headers=listed
    )
    assert ok.status_code == 201, ok.text
    assert (await api.get(f"/v1/funds/grants/{ok.json()['id']}", headers=named)).status_code == 404
    body = grant_body(named_fund["id"], child, category="medical_transport")
    assert (await api.post("/v1/funds/grants", json=body, headers=named)).status_code == 404
    assert (await api.post("/v1/funds/grants", json=body, headers=manager)).status_code == 422
