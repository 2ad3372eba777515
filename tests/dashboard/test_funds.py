"""The funds pages' pure helpers: amounts as people type them, the funds offered for a
child, the grant form's body, and maker-checker made visible."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.i18n import translator
from dashboard.pages.funds import (
    action_body,
    approval_state,
    grant_actions,
    grant_body,
    order_funds,
    parse_riel,
)

t = translator("en")
ME, OTHER = "usr_me", "usr_other"
ORG = "ccwc-120101"


@pytest.mark.parametrize(
    ("typed", "riel"),
    [
        ("250000", 250_000),
        ("250,000", 250_000),
        (" 1 250 000 ", 1_250_000),
        ("1\u00a0250\u202f000", 1_250_000),
        ("២៥០,០០០", 250_000),
        ("0", 0),
    ],
)
def test_parse_riel_reads_what_people_type(typed: str, riel: int) -> None:
    assert parse_riel(typed) == riel


@pytest.mark.parametrize(
    "typed", ["", "  ", None, "12.5", "-5", "+5", "1e5", "abc", "٣٠٠", "9" * 17, "1000000000000001"]
)
def test_parse_riel_refuses_what_is_not_whole_riel(typed: str | None) -> None:
    assert parse_riel(typed) is None


def fund(code: str, year: int = 2026, name: str = "F") -> dict[str, Any]:
    return {"id": f"{code}-{year}", "commune_code": code, "fiscal_year": year, "name": name}


def test_funds_covering_the_child_come_first_most_local_first() -> None:
    funds = [
        fund("12", name="Province"),
        fund("020101", name="Elsewhere"),
        fund("1201", name="District"),
        fund("120101", 2025, name="Commune old"),
        fund("120101", 2026, name="Commune"),
        fund("120102", name="Neighbour"),
    ]
    covering, others = order_funds(funds, "120101")
    assert [f["name"] for f in covering] == ["Commune", "Commune old", "District", "Province"]
    assert [f["name"] for f in others] == ["Elsewhere", "Neighbour"]


def form(**fields: str) -> dict[str, str]:
    return {"child_id": "c1", "fund_id": "f1", **fields}


def test_grant_body_for_education_support() -> None:
    body, errors = grant_body(
        form(category="education_support", amount_khr="250,000", justification=" Books "), t
    )
    assert errors == []
    assert body == {
        "child_id": "c1",
        "fund_id": "f1",
        "category": "education_support",
        "amount_khr": 250_000,
        "justification": "Books",
    }


def test_a_disaster_names_its_shock_and_only_a_disaster_does() -> None:
    body, errors = grant_body(form(category="emergency_disaster", shock="flood", amount_khr="1"), t)
    assert errors == []
    assert body["shock"] == "flood"
    _, errors = grant_body(form(category="emergency_disaster", amount_khr="1"), t)
    assert [e["field"] for e in errors] == ["shock"]
    body, _ = grant_body(form(category="medical_transport", shock="flood", amount_khr="1"), t)
    assert "shock" not in body


def test_material_support_lists_its_items_and_totals_them() -> None:
    fields = form(
        category="material_support",
        item_description_0="Rice",
        item_quantity_0="6",
        item_unit_cost_0="១៥០,០០០",
        item_description_2="Net",
        item_quantity_2="4",
        item_unit_cost_2="50000",
    )
    body, errors = grant_body(fields, t)
    assert errors == []
    assert body["items"] == [
        {"description": "Rice", "quantity": 6, "unit_cost_khr": 150_000},
        {"description": "Net", "quantity": 4, "unit_cost_khr": 50_000},
    ]
    assert body["amount_khr"] == 1_100_000
    # An amount typed is sent as typed: the API judges whether the items cost it.
    body, _ = grant_body({**fields, "amount_khr": "1,000,000"}, t)
    assert body["amount_khr"] == 1_000_000


def test_material_support_without_items_or_with_a_bad_row() -> None:
    _, errors = grant_body(form(category="material_support", amount_khr="5"), t)
    assert [e["field"] for e in errors] == ["items"]
    _, errors = grant_body(
        form(category="material_support", item_description_1="Rice", item_quantity_1="0.5"), t
    )
    assert {e["field"] for e in errors} == {"item_quantity_1", "item_unit_cost_1", "amount_khr"}
    body, _ = grant_body(
        form(category="education_support", item_description_0="x", amount_khr="1"), t
    )
    assert "items" not in body


def test_grant_body_names_what_is_wrong() -> None:
    _, errors = grant_body({"child_id": "c1", "category": "holiday", "amount_khr": "12.5"}, t)
    assert {e["field"] for e in errors} == {"category", "fund_id", "amount_khr"}
    _, errors = grant_body(form(category="education_support", amount_khr="0"), t)
    assert [e["field"] for e in errors] == ["amount_khr"]
    _, errors = grant_body(
        form(category="education_support", amount_khr="1", justification="x" * 2001), t
    )
    assert [e["field"] for e in errors] == ["justification"]


def test_action_bodies() -> None:
    assert action_body("approve", {}, t) == ({}, [])
    assert action_body("reject", {"reject_reason": " No "}, t) == ({"reason": "No"}, [])
    assert action_body("reject", {}, t)[1][0]["field"] == "reject_reason"
    assert action_body("cancel", {}, t) == ({}, [])
    assert action_body("cancel", {"cancel_reason": "Moved"}, t) == ({"reason": "Moved"}, [])
    body, errors = action_body("disburse", {"method": "mobile_money", "reference": "W-1"}, t)
    assert body == {"method": "mobile_money", "reference": "W-1"}
    assert errors == []
    _, errors = action_body("disburse", {"method": "gold", "reference": ""}, t)
    assert {e["field"] for e in errors} == {"method", "reference"}


def grant(
    status: str = "requested", by: str = OTHER, approvals: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "status": status,
        "requested_by": {"sub": by, "org": ORG},
        "approvals": [{"by": {"sub": s, "org": ORG}} for s in approvals],
    }


APPROVER = frozenset({"funds:read", "funds:approve"})


def test_a_grant_i_requested_is_never_mine_to_approve() -> None:
    mine = grant(by=ME)
    assert approval_state(mine, ME) == "mine"
    assert "approve" not in grant_actions(mine, ME, ORG, APPROVER)
    assert "reject" not in grant_actions(mine, ME, ORG, APPROVER)


def test_another_persons_grant_is_approved_or_rejected_once() -> None:
    theirs = grant()
    assert approval_state(theirs, ME) == "open"
    assert grant_actions(theirs, ME, ORG, APPROVER) == ["approve", "reject"]
    approved_once = grant(approvals=(ME,))
    assert approval_state(approved_once, ME) == "approved_by_me"
    assert grant_actions(approved_once, ME, ORG, APPROVER) == []
    assert grant_actions(theirs, ME, ORG, frozenset({"funds:read"})) == []


def test_paying_and_cancelling() -> None:
    pay = frozenset({"funds:disburse"})
    assert grant_actions(grant("approved"), ME, ORG, pay) == ["disburse"]
    assert grant_actions(grant("requested"), ME, ORG, pay) == []
    request = frozenset({"funds:request"})
    assert grant_actions(grant("requested"), ME, ORG, request) == ["cancel"]
    assert grant_actions(grant("approved"), ME, ORG, request) == ["cancel"]
    assert grant_actions(grant("approved"), ME, "another-org", request) == []
    assert grant_actions(grant("approved"), ME, "another-org", frozenset({"funds:manage"})) == [
        "cancel"
    ]
    for done in ("disbursed", "rejected", "cancelled", "reversed"):
        assert grant_actions(grant(done), ME, ORG, request | pay | APPROVER) == []
