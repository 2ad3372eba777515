"""Grants from request to payment and back, the limits, and maker-checker approval."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from tests.funds.conftest import (
    OTHER_VILLAGE,
    People,
    add_children,
    child_event,
    grant_body,
    make_fund,
    make_grant,
    publish,
    wait_processed,
)


async def fund_state(api: httpx.AsyncClient, people: People, fund_id: str) -> dict:
    r = await api.get(f"/v1/funds/funds/{fund_id}", headers=people.manager)
    assert r.status_code == 200
    return dict(r.json())


async def ledger(api: httpx.AsyncClient, people: People, fund_id: str) -> list[dict]:
    r = await api.get(f"/v1/funds/funds/{fund_id}/ledger", headers=people.manager)
    assert r.status_code == 200
    return list(r.json()["items"])


async def test_a_grant_from_request_to_payment_moves_the_money_once(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    assert fund["available_khr"] == 1_000_000
    grant = await make_grant(api, people, fund["id"], child, amount_khr=150_000)
    assert grant["status"] == "requested"
    assert grant["commune_code"] == "120101"
    assert grant["history"][0]["action"] == "requested"
    assert (await fund_state(api, people, fund["id"]))["available_khr"] == 1_000_000

    url = f"/v1/funds/grants/{grant['id']}"
    r = await api.post(f"{url}/approve", headers=people.approver)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert [a["by"]["sub"] for a in r.json()["approvals"]] == [f"approver-{people.tag}"]
    after_approval = await fund_state(api, people, fund["id"])
    assert after_approval["committed_khr"] == 150_000
    assert after_approval["available_khr"] == 850_000

    r = await api.post(
        f"{url}/disburse", json={"method": "cash", "reference": "R-0001"}, headers=people.disburser
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disbursed"
    assert r.json()["disbursement"]["method"] == "cash"
    paid = await fund_state(api, people, fund["id"])
    assert (paid["committed_khr"], paid["disbursed_khr"], paid["available_khr"]) == (
        0,
        150_000,
        850_000,
    )
    entries = await ledger(api, people, fund["id"])
    assert [(e["kind"], e["amount_khr"]) for e in entries] == [
        ("commitment", 150_000),
        ("disbursement", 150_000),
    ]
    assert all(e["grant_id"] == grant["id"] for e in entries)

    again = await api.post(
        f"{url}/disburse", json={"method": "cash", "reference": "R-0002"}, headers=people.disburser
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "already disbursed" in again.json()["detail"]
    assert len(await ledger(api, people, fund["id"])) == 2
    cancel = await api.post(f"{url}/cancel", headers=people.requester)
    assert cancel.status_code == 409
    assert "reversal" in cancel.json()["detail"]

    r = await api.post(
        f"{url}/reverse", json={"reason": "paid twice by hand"}, headers=people.manager
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reversed"
    assert [h["action"] for h in r.json()["history"]] == [
        "requested",
        "approved",
        "disbursed",
        "reversed",
    ]
    back = await fund_state(api, people, fund["id"])
    assert (back["disbursed_khr"], back["available_khr"]) == (0, 1_000_000)
    kinds = [e["kind"] for e in await ledger(api, people, fund["id"])]
    assert kinds == ["commitment", "disbursement", "reversal"]


async def test_cancel_before_payment_releases_the_commitment(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    children = await add_children(funds_app, registry_bus, 2)
    fund = await make_fund(api, people)
    approved = await make_grant(api, people, fund["id"], children[0])
    requested = await make_grant(api, people, fund["id"], children[1])
    await api.post(f"/v1/funds/grants/{approved['id']}/approve", headers=people.approver)
    assert (await fund_state(api, people, fund["id"]))["available_khr"] == 900_000

    r = await api.post(
        f"/v1/funds/grants/{approved['id']}/cancel",
        json={"reason": "family moved"},
        headers=people.requester,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    r = await api.post(f"/v1/funds/grants/{requested['id']}/cancel", headers=people.requester)
    assert r.json()["status"] == "cancelled"
    state = await fund_state(api, people, fund["id"])
    assert (state["committed_khr"], state["available_khr"]) == (0, 1_000_000)
    kinds = [e["kind"] for e in await ledger(api, people, fund["id"])]
    assert kinds == ["commitment", "release"]  # nothing was committed for the requested one
    # a cancelled grant cannot be approved or paid any more
    again = await api.post(f"/v1/funds/grants/{approved['id']}/approve", headers=people.approver)
    assert again.status_code == 409


async def test_top_ups_add_to_available_and_a_reference_books_once(
    api: httpx.AsyncClient, people: People
) -> None:
    fund = await make_fund(api, people, budget_khr=0)
    url = f"/v1/funds/funds/{fund['id']}/top-ups"
    r = await api.post(
        url, json={"amount_khr": 250_000, "reference": "MEF-TR-77"}, headers=people.manager
    )
    assert r.status_code == 200, r.text
    assert (r.json()["topped_up_khr"], r.json()["available_khr"]) == (250_000, 250_000)
    assert r.headers["etag"] == '"2"'
    twice = await api.post(
        url, json={"amount_khr": 250_000, "reference": "MEF-TR-77"}, headers=people.manager
    )
    assert twice.status_code == 409
    assert (await fund_state(api, people, fund["id"]))["available_khr"] == 250_000
    entries = await ledger(api, people, fund["id"])
    assert [(e["kind"], e["amount_khr"], e["reference"]) for e in entries] == [
        ("top_up", 250_000, "MEF-TR-77")
    ]


async def test_rejected_grant_keeps_the_reason_in_its_history(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    grant = await make_grant(api, people, fund["id"], child)
    r = await api.post(
        f"/v1/funds/grants/{grant['id']}/reject",
        json={"reason": "already supported by an NGO"},
        headers=people.approver,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "rejected"
    last = r.json()["history"][-1]
    assert (last["action"], last["reason"], last["by"]["sub"]) == (
        "rejected",
        "already supported by an NGO",
        f"approver-{people.tag}",
    )
    # the child may ask again now that nothing is open
    await make_grant(api, people, fund["id"], child)


# ---------------------------------------------------------------- maker-checker


async def test_the_requester_cannot_approve_their_own_grant(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    both_hats = people.h(
        "requester", areas=["120101"], scope="funds:read funds:request funds:approve"
    )
    r = await api.post("/v1/funds/grants", json=grant_body(fund["id"], child), headers=both_hats)
    assert r.status_code == 201
    own = await api.post(f"/v1/funds/grants/{r.json()['id']}/approve", headers=both_hats)
    assert own.status_code == 403
    assert own.headers["content-type"] == "application/problem+json"
    assert "another principal" in own.json()["detail"]
    grant = (await api.get(f"/v1/funds/grants/{r.json()['id']}", headers=both_hats)).json()
    assert (grant["status"], grant["approvals"]) == ("requested", [])
    assert (await fund_state(api, people, fund["id"]))["committed_khr"] == 0


async def test_above_the_threshold_a_district_level_second_approval_is_needed(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people, approval_threshold_khr=200_000)
    grant = await make_grant(
        api,
        people,
        fund["id"],
        child,
        category="emergency_disaster",
        shock="flood",
        amount_khr=300_000,
    )
    url = f"/v1/funds/grants/{grant['id']}/approve"
    assert grant["approvals_required"] == 2

    first = await api.post(url, headers=people.approver)
    assert first.status_code == 200
    assert first.json()["status"] == "requested"  # recorded, not yet approved
    assert len(first.json()["approvals"]) == 1
    assert (await fund_state(api, people, fund["id"]))["committed_khr"] == 0

    twice = await api.post(url, headers=people.approver)
    assert twice.status_code == 409

    commune_colleague = people.h("colleague", areas=["120101"], scope="funds:read funds:approve")
    refused = await api.post(url, headers=commune_colleague)
    assert refused.status_code == 403
    assert "district" in refused.json()["detail"]
    assert (await fund_state(api, people, fund["id"]))["committed_khr"] == 0

    second = await api.post(url, headers=people.district_approver)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "approved"
    assert [a["district_level"] for a in second.json()["approvals"]] == [False, True]
    assert (await fund_state(api, people, fund["id"]))["committed_khr"] == 300_000


async def test_at_the_threshold_one_commune_approval_suffices(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people, approval_threshold_khr=200_000)
    grant = await make_grant(api, people, fund["id"], child, amount_khr=200_000)
    r = await api.post(f"/v1/funds/grants/{grant['id']}/approve", headers=people.approver)
    assert r.json()["status"] == "approved"


# ---------------------------------------------------------------- limits and bad input


async def grant_count(api: httpx.AsyncClient, people: People, fund_id: str) -> int:
    r = await api.get(f"/v1/funds/grants?fund_id={fund_id}&limit=500", headers=people.manager)
    return len(r.json()["items"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount_khr": 400_001}, "amount_khr"),  # above max_grant_khr
        ({"amount_khr": 0}, "amount_khr"),
        ({"amount_khr": -5_000}, "amount_khr"),
        ({"amount_khr": 100000.5}, "amount_khr"),
        ({"amount_khr": 1e5}, "amount_khr"),
        ({"amount_khr": "100000"}, "amount_khr"),
        ({"amount_khr": True}, "amount_khr"),
        ({"category": "emergency_disaster"}, "body"),  # no shock
        ({"shock": "flood"}, "body"),  # a shock for school support
        ({"category": "material_support"}, "body"),  # no items
        (
            {
                "category": "material_support",
                "items": [{"description": "rice 50 kg", "quantity": 2, "unit_cost_khr": 40_000}],
            },
            "body",
        ),  # items cost 80,000, not 100,000
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_grant_requests_are_422_and_store_nothing(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    overrides: dict,
    field: str,
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    r = await api.post(
        "/v1/funds/grants",
        json=grant_body(fund["id"], child, **overrides),
        headers=people.requester,
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in r.json()["errors"]}
    assert await grant_count(api, people, fund["id"]) == 0
    assert await ledger(api, people, fund["id"]) == []


async def test_a_second_open_grant_of_a_category_is_409_and_stores_nothing(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    first = await make_grant(api, people, fund["id"], child)
    second = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], child), headers=people.requester
    )
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert "open grant" in second.json()["detail"]
    # still open once approved
    await api.post(f"/v1/funds/grants/{first['id']}/approve", headers=people.approver)
    third = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], child), headers=people.requester
    )
    assert third.status_code == 409
    assert await grant_count(api, people, fund["id"]) == 1
    # another category is another matter
    await make_grant(api, people, fund["id"], child, category="medical_transport")


async def test_material_support_lists_what_is_bought(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    items = [
        {"description": "rice 50 kg", "quantity": 2, "unit_cost_khr": 40_000},
        {"description": "mosquito net", "quantity": 1, "unit_cost_khr": 20_000},
    ]
    grant = await make_grant(
        api, people, fund["id"], child, category="material_support", items=items
    )
    assert grant["items"] == items


async def test_a_repeat_within_30_days_needs_a_justification_and_is_flagged(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    first = await make_grant(api, people, fund["id"], child)
    assert first["repeat_within_30_days"] is False
    await api.post(f"/v1/funds/grants/{first['id']}/approve", headers=people.approver)
    await api.post(
        f"/v1/funds/grants/{first['id']}/disburse",
        json={"method": "mobile_money", "reference": "WING-1"},
        headers=people.disburser,
    )
    bare = grant_body(fund["id"], child)
    del bare["justification"]
    r = await api.post("/v1/funds/grants", json=bare, headers=people.requester)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "justification"
    second = await make_grant(
        api, people, fund["id"], child, justification="the bicycle was lost in the flood"
    )
    assert second["repeat_within_30_days"] is True


async def test_a_child_outside_the_fund_area_or_closed_gets_422(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [elsewhere] = await add_children(funds_app, registry_bus, village=OTHER_VILLAGE)
    [closed] = await add_children(funds_app, registry_bus, status="closed")
    fund = await make_fund(api, people)  # Tonle Basak
    district_worker = people.h("district-worker", areas=["1201"], scope="funds:request")
    r = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], elsewhere), headers=district_worker
    )
    assert r.status_code == 422
    assert "outside the fund's area" in r.json()["detail"]
    r = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], closed), headers=people.requester
    )
    assert r.status_code == 422
    assert "closed" in r.json()["detail"]


async def test_the_projection_applies_only_newer_versions(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    # the child moves to another commune (v2); a late copy of v1 must not move it back
    moved = child_event(child, village=OTHER_VILLAGE, version=2, verb="updated")
    stale = child_event(child, version=1)
    await publish(registry_bus, [moved, stale])
    await wait_processed(funds_app, [moved.id, stale.id])
    r = await api.post(
        "/v1/funds/grants", json=grant_body(fund["id"], child), headers=people.requester
    )
    assert r.status_code == 404  # no longer a Tonle Basak child: not visible to its worker
    # closed (v3), published twice as a relay retry would: the case is closed
    closed = child_event(child, village=OTHER_VILLAGE, version=3, verb="closed", status="closed")
    await publish(registry_bus, [closed, closed])
    await wait_processed(funds_app, [closed.id])
    other_fund = await make_fund(api, people, commune_code="120109")
    worker = people.h("other-worker", areas=["120109"], scope="funds:request")
    r = await api.post("/v1/funds/grants", json=grant_body(other_fund["id"], child), headers=worker)
    assert r.status_code == 422
    assert "closed" in r.json()["detail"]


async def test_actions_honour_if_match_when_sent(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    grant = await make_grant(api, people, fund["id"], child)
    url = f"/v1/funds/grants/{grant['id']}/approve"
    stale = await api.post(url, headers={**people.approver, "If-Match": '"7"'})
    assert stale.status_code == 412
    fresh = await api.post(url, headers={**people.approver, "If-Match": '"1"'})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == '"2"'


async def test_grant_lists_filter_and_page(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    children = await add_children(funds_app, registry_bus, 5)
    fund = await make_fund(api, people)
    made = [await make_grant(api, people, fund["id"], c) for c in children]
    made.append(
        await make_grant(api, people, fund["id"], children[0], category="medical_transport")
    )
    await api.post(f"/v1/funds/grants/{made[1]['id']}/approve", headers=people.approver)

    seen: list[str] = []
    url = f"/v1/funds/grants?fund_id={fund['id']}&limit=2"
    while url:
        page = (await api.get(url, headers=people.requester)).json()
        assert len(page["items"]) <= 2
        seen += [g["id"] for g in page["items"]]
        cursor = page["next_cursor"]
        url = f"/v1/funds/grants?fund_id={fund['id']}&limit=2&cursor={cursor}" if cursor else ""
    assert sorted(seen) == sorted(g["id"] for g in made)
    assert seen[-1] == made[1]["id"]  # the last changed comes last

    async def ids(query: str) -> set[str]:
        r = await api.get(f"/v1/funds/grants?fund_id={fund['id']}&{query}", headers=people.manager)
        assert r.status_code == 200, r.text
        return {g["id"] for g in r.json()["items"]}

    assert await ids("status=approved") == {made[1]["id"]}
    assert await ids("category=medical_transport") == {made[-1]["id"]}
    assert await ids(f"child_id={children[0]}") == {made[0]["id"], made[-1]["id"]}
    approved = (await api.get(f"/v1/funds/grants/{made[1]['id']}", headers=people.manager)).json()
    since = approved["updated_at"].replace("+00:00", "Z")
    assert await ids(f"updated_since={since}") == {made[1]["id"]}
    bad = await api.get("/v1/funds/grants?status=paid", headers=people.manager)
    assert bad.status_code == 422


async def test_the_openapi_document_describes_the_api(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert "/v1/funds/grants/{grant_id}/disburse" in doc["paths"]
    assert "/v1/funds/reconciliation" in doc["paths"]
