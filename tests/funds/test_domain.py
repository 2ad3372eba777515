"""The funds rules on their own: visibility, states, maker-checker, money, reconciliation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from libs.common.auth import Principal
from libs.common.errors import Conflict, Forbidden, Unprocessable
from services.funds import domain
from services.funds.schemas import FundIn, GrantIn, TopUpIn


def principal(*areas: str, sub: str = "p") -> Principal:
    return Principal(sub, "org", "government", frozenset(), tuple(areas))


@pytest.mark.parametrize(
    ("areas", "fund_code", "visible"),
    [
        (("120101",), "120101", True),  # its own commune
        (("120101",), "1201", True),  # the district fund that can pay for its children
        (("120101",), "12", True),  # the province fund
        (("1201",), "120101", True),  # a commune fund of one's district
        (("120101",), "120109", False),  # a neighbouring commune
        (("120101",), "1202", False),  # another district
        (("12010101",), "120101", True),  # a village worker sees its commune fund
        (("KH",), "020101", True),
        (("02", "120109"), "120101", False),
    ],
)
def test_fund_visibility_is_overlap_of_areas(
    areas: tuple[str, ...], fund_code: str, visible: bool
) -> None:
    assert domain.fund_visible(principal(*areas), fund_code) is visible


def test_state_machine_answers_409_with_the_reason() -> None:
    assert domain.next_status("disburse", "approved") == "disbursed"
    assert domain.next_status("cancel", "approved") == "cancelled"
    assert domain.next_status("approve", "requested") == "requested"  # the use case decides
    for action, status, words in [
        ("disburse", "disbursed", "already disbursed"),
        ("disburse", "requested", "not approved"),
        ("cancel", "disbursed", "reversal"),
        ("reverse", "approved", "only a disbursed"),
        ("approve", "rejected", "rejected"),
        ("approve", "approved", "already approved"),
    ]:
        with pytest.raises(Conflict, match=words):
            domain.next_status(action, status)


def approve(approvals: list[domain.Approval], who: domain.Approval, required: int = 1) -> bool:
    return domain.approve(
        status="requested",
        requester_sub="maker",
        required=required,
        approvals=approvals,
        approver=who,
    )


def test_maker_checker() -> None:
    commune, district = domain.Approval("c", False), domain.Approval("d", True)
    with pytest.raises(Forbidden, match="another principal"):
        approve([], domain.Approval("maker", True))
    assert approve([], commune) is True
    assert approve([], commune, required=2) is False
    with pytest.raises(Conflict, match="already approved"):
        approve([commune], commune, required=2)
    with pytest.raises(Forbidden, match="district"):
        approve([commune], domain.Approval("c2", False), required=2)
    assert approve([commune], district, required=2) is True
    assert domain.approvals_required(200_000, 200_000) == 1
    assert domain.approvals_required(200_001, 200_000) == 2


def test_insufficient_funds_names_both_amounts() -> None:
    domain.check_available(100_000, 100_000)
    with pytest.raises(Conflict) as err:
        domain.check_available(99_999, 100_000)
    assert err.value.detail == "insufficient funds: available 99999, needed 100000"


def test_repeat_within_30_days() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    assert domain.is_repeat(now - timedelta(days=29, hours=23), now)
    assert not domain.is_repeat(now - timedelta(days=30), now)
    assert not domain.is_repeat(None, now)
    with pytest.raises(Unprocessable):
        domain.check_repeat(True, None)


@pytest.mark.parametrize("amount", [0, -1, 100000.5, 1e5, "100000", True, None, 10**16])
def test_money_is_positive_whole_riel(amount: object) -> None:
    with pytest.raises(ValidationError):
        TopUpIn.model_validate({"amount_khr": amount, "reference": "x"})


@pytest.mark.parametrize("code", ["12", "1201", "120101"])
def test_funds_sit_at_a_province_district_or_commune(code: str) -> None:
    body = {
        "commune_code": code,
        "fiscal_year": 2026,
        "name": "f",
        "budget_khr": 0,
        "max_grant_khr": 1,
        "approval_threshold_khr": 0,
    }
    assert FundIn.model_validate(body).commune_code == code
    for bad in ("12010101", "KH", "129999", "1"):
        with pytest.raises(ValidationError):
            FundIn.model_validate({**body, "commune_code": bad})


def test_ledger_kinds_must_fit_the_grant_status() -> None:
    assert domain.ledger_kinds_fit("disbursed", ["disbursement", "commitment"])
    assert domain.ledger_kinds_fit("cancelled", [])
    assert domain.ledger_kinds_fit("cancelled", ["commitment", "release"])
    assert not domain.ledger_kinds_fit("disbursed", ["commitment"])
    assert not domain.ledger_kinds_fit("approved", ["commitment", "commitment"])


def test_reconcile_finds_a_fund_that_disagrees_with_its_ledger() -> None:
    fund = {
        "id": uuid.uuid4(),
        "budget_khr": 1000,
        "topped_up_khr": 500,
        "committed_khr": 300,
        "disbursed_khr": 200,
        "available_khr": 1000,
    }
    ledger = {
        "top_up": {"count": 1, "amount_khr": 500},
        "commitment": {"count": 2, "amount_khr": 500},
        "disbursement": {"count": 1, "amount_khr": 200},
    }
    grants = {
        "approved": {"count": 1, "amount_khr": 300},
        "disbursed": {"count": 1, "amount_khr": 200},
    }
    assert domain.reconcile(fund, ledger, grants, {}, []).balanced
    tampered = {**ledger, "top_up": {"count": 1, "amount_khr": 5000}}
    verdict = domain.reconcile(fund, tampered, grants, {}, [])
    assert not verdict.balanced
    assert "topped_up_khr: the fund says 500, the ledger sums to 5000" in verdict.problems


def test_grant_requests_follow_their_category() -> None:
    base = {"child_id": str(uuid.uuid4()), "fund_id": str(uuid.uuid4()), "amount_khr": 50_000}
    GrantIn.model_validate({**base, "category": "emergency_disaster", "shock": "fire"})
    GrantIn.model_validate({**base, "category": "medical_transport"})
    items = [{"description": "uniform", "quantity": 2, "unit_cost_khr": 25_000}]
    GrantIn.model_validate({**base, "category": "material_support", "items": items})
    for bad in (
        {"category": "emergency_disaster"},
        {"category": "medical_transport", "shock": "flood"},
        {"category": "material_support"},
        {"category": "education_support", "items": items},
        {"category": "material_support", "items": [{**items[0], "quantity": 1}]},
    ):
        with pytest.raises(ValidationError):
            GrantIn.model_validate({**base, **bad})
