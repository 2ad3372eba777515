"""Funds rules: where funds are seen, grant states, maker-checker approval, limits, and how
the ledger, the fund's totals and the grants must agree. No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from libs.common import places
from libs.common.auth import COUNTRY, Principal
from libs.common.errors import Conflict, Forbidden, invalid
from libs.common.events.funds_events import (
    Category,
    FundToppedUpV1,
    FundV1,
    GrantDisbursedV1,
    GrantV1,
)

REPEAT_WINDOW = timedelta(days=30)
LEDGER_KINDS = ("top_up", "commitment", "release", "disbursement", "reversal")
GRANT_STATUSES = ("requested", "approved", "rejected", "disbursed", "cancelled", "reversed")
CATEGORIES = tuple(c.value for c in Category)
SHOCKS = ("flood", "storm", "fire", "drought", "other")
METHODS = ("cash", "bank", "mobile_money")

# ---------------------------------------------------------------- places


def place_of(child: Mapping[Any, Any]) -> str:
    """A child's most local place: its village, else its commune."""
    return str(child["village_code"] or child["commune_code"])


def fund_visible(principal: Principal, fund_code: str) -> bool:
    """A fund is visible when its area and one of the principal's areas overlap.

    Either the fund's area contains an area (a commune worker sees the district and
    province funds that can pay for its children) or an area contains the fund's (a
    district officer sees the commune funds of its district). A village lies in the
    commune the gazetteer lists it in.
    """
    return principal.covers(fund_code) or any(
        fund_code in area_prefixes(a) for a in principal.areas if a != COUNTRY
    )


def area_prefixes(code: str) -> list[str]:
    """Every code that contains `code` (itself included): 120101 → 12, 1201, 120101; a
    village lies in the commune the gazetteer lists it in."""
    return [p for p in places.parents(code) if p != COUNTRY]


def covers_fund_area(principal: Principal, fund_code: str) -> bool:
    """Whether the principal's areas cover the fund's whole area (not merely a part)."""
    return principal.covers(fund_code)


def require_books(principal: Principal, fund_code: str) -> None:
    """403 unless the principal may read a fund's ledger and reconciliation: its areas
    cover the fund's whole area (a fund above them stays visible, its books do not)."""
    if not covers_fund_area(principal, fund_code):
        raise Forbidden(
            "a fund's ledger and reconciliation are for principals whose areas cover the "
            f"fund's whole area ({fund_code})"
        )


def check_child_in_fund_area(fund_code: str, child: Mapping[Any, Any]) -> None:
    """A fund pays only for children inside its own area, the listed commune deciding
    (422 otherwise)."""
    if not str(child["commune_code"]).startswith(fund_code):
        raise invalid("fund_id", f"the child lives outside the fund's area {fund_code}")


# ---------------------------------------------------------------- grant states

_ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "approve": ("requested",),
    "reject": ("requested",),
    "disburse": ("approved",),
    "cancel": ("requested", "approved"),
    "reverse": ("disbursed",),
}
_PAST = {
    "approve": "approved",
    "reject": "rejected",
    "disburse": "disbursed",
    "cancel": "cancelled",
    "reverse": "reversed",
}


def next_status(action: str, status: str) -> str:
    """The status an action leads to from `status`, else 409 saying why not."""
    if status in _ALLOWED_FROM[action]:
        return status if action == "approve" else _PAST[action]
    if status == _PAST[action]:
        raise Conflict(f"the grant is already {status}")
    if action == "disburse" and status == "requested":
        raise Conflict("the grant is not approved yet")
    if action == "cancel" and status == "disbursed":
        raise Conflict("the grant is disbursed: only a reversal can undo it")
    if action == "reverse":
        raise Conflict("only a disbursed grant can be reversed")
    raise Conflict(f"a grant that is {status} cannot be {_PAST[action]}")


# ---------------------------------------------------------------- approvals


@dataclass(frozen=True)
class Approval:
    """One principal's sign-off on a grant."""

    sub: str
    district_level: bool


def approvals_required(amount_khr: int, threshold_khr: int) -> int:
    """Up to the threshold one approval suffices; above it two are needed."""
    return 1 if amount_khr <= threshold_khr else 2


def approve(
    *,
    status: str,
    requester_sub: str,
    required: int,
    approvals: Sequence[Approval],
    approver: Approval,
) -> bool:
    """Check one more approval; True when it completes the grant's approval.

    Maker-checker: the requester never approves; nobody approves twice; above the threshold
    the second approval must come from district level or higher.
    """
    next_status("approve", status)
    if approver.sub == requester_sub:
        raise Forbidden("you requested this grant: another principal must approve it")
    if any(a.sub == approver.sub for a in approvals):
        raise Conflict("you already approved this grant: the next approval must be someone else's")
    completes = len(approvals) + 1 >= required
    if completes and required > 1 and not approver.district_level:
        raise Forbidden(
            "the amount is above the fund's approval threshold: the second approval "
            "must come from district level or higher"
        )
    return completes


def check_available(available_khr: int, amount_khr: int) -> None:
    """409 unless the fund can commit the amount."""
    if available_khr < amount_khr:
        raise Conflict(
            f"insufficient funds: available {available_khr}, needed {amount_khr}",
            available_khr=available_khr,
            needed_khr=amount_khr,
        )


# ---------------------------------------------------------------- requests


def check_amount(amount_khr: int, max_grant_khr: int) -> None:
    """A grant may not exceed the fund's maximum."""
    if amount_khr > max_grant_khr:
        raise invalid("amount_khr", f"exceeds the fund's maximum grant of {max_grant_khr} riel")


def check_child_open(child: Mapping[Any, Any]) -> None:
    """Only an open case receives grants."""
    if child["status"] != "open":
        raise invalid("child_id", "the child's case is closed")


def is_repeat(last_disbursed_at: datetime | None, now: datetime) -> bool:
    """Whether a disbursed grant of the same category lies within the last 30 days."""
    return last_disbursed_at is not None and now - last_disbursed_at < REPEAT_WINDOW


def check_repeat(repeat: bool, justification: str | None) -> None:
    """A repeat within 30 days needs a justification for the approver."""
    if repeat and not justification:
        raise invalid(
            "justification",
            "required: the child received a grant of this category in the last 30 days",
        )


# ---------------------------------------------------------------- ledger and reconciliation


@dataclass(frozen=True)
class Totals:
    """A fund's balances in riel."""

    topped_up_khr: int
    committed_khr: int
    disbursed_khr: int
    available_khr: int


def totals_from_ledger(budget_khr: int, sums: Mapping[str, int]) -> Totals:
    """The balances the ledger says a fund has."""
    s = {k: int(sums.get(k, 0)) for k in LEDGER_KINDS}
    committed = s["commitment"] - s["release"] - s["disbursement"]
    disbursed = s["disbursement"] - s["reversal"]
    return Totals(
        topped_up_khr=s["top_up"],
        committed_khr=committed,
        disbursed_khr=disbursed,
        available_khr=budget_khr + s["top_up"] - committed - disbursed,
    )


def totals_of(fund: Mapping[Any, Any]) -> Totals:
    """The balances the fund row keeps."""
    return Totals(
        topped_up_khr=int(fund["topped_up_khr"]),
        committed_khr=int(fund["committed_khr"]),
        disbursed_khr=int(fund["disbursed_khr"]),
        available_khr=int(fund["available_khr"]),
    )


def ledger_kinds_fit(status: str, kinds: Sequence[str]) -> bool:
    """Whether a grant's ledger entries are exactly those its status implies."""
    have = sorted(kinds)
    expected: dict[str, list[list[str]]] = {
        "requested": [[]],
        "rejected": [[]],
        "approved": [["commitment"]],
        "cancelled": [[], ["commitment", "release"]],
        "disbursed": [["commitment", "disbursement"]],
        "reversed": [["commitment", "disbursement", "reversal"]],
    }
    return have in [sorted(e) for e in expected[status]]


@dataclass
class Reconciliation:
    """Whether a fund's row, its ledger and its grants tell the same story."""

    fund_id: str
    fund_totals: Totals
    ledger_totals: Totals
    ledger_by_kind: dict[str, dict[str, int]]
    grants_by_status: dict[str, dict[str, int]]
    grants_by_category: dict[str, dict[str, int]]
    bad_grants: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems


def reconcile(
    fund: Mapping[Any, Any],
    ledger_by_kind: Mapping[str, Mapping[str, int]],
    grants_by_status: Mapping[str, Mapping[str, int]],
    grants_by_category: Mapping[str, Mapping[str, int]],
    bad_grants: Sequence[str],
) -> Reconciliation:
    """Compare the fund's running totals with the ledger's sums and the grants' amounts."""
    empty = {"count": 0, "amount_khr": 0}
    ledger = {k: {**empty, **ledger_by_kind.get(k, {})} for k in LEDGER_KINDS}
    by_status = {s: {**empty, **grants_by_status.get(s, {})} for s in GRANT_STATUSES}
    row = totals_of(fund)
    from_ledger = totals_from_ledger(
        int(fund["budget_khr"]), {k: v["amount_khr"] for k, v in ledger.items()}
    )
    result = Reconciliation(
        fund_id=str(fund["id"]),
        fund_totals=row,
        ledger_totals=from_ledger,
        ledger_by_kind=ledger,
        grants_by_status=by_status,
        grants_by_category={c: {**empty, **grants_by_category.get(c, {})} for c in CATEGORIES},
        bad_grants=list(bad_grants),
    )
    for name in ("topped_up_khr", "committed_khr", "disbursed_khr", "available_khr"):
        kept, summed = getattr(row, name), getattr(from_ledger, name)
        if kept != summed:
            result.problems.append(f"{name}: the fund says {kept}, the ledger sums to {summed}")
    if row.committed_khr != by_status["approved"]["amount_khr"]:
        result.problems.append(
            f"committed_khr: the fund says {row.committed_khr}, "
            f"approved grants total {by_status['approved']['amount_khr']}"
        )
    if row.disbursed_khr != by_status["disbursed"]["amount_khr"]:
        result.problems.append(
            f"disbursed_khr: the fund says {row.disbursed_khr}, "
            f"disbursed grants total {by_status['disbursed']['amount_khr']}"
        )
    if row.available_khr < 0:
        result.problems.append(f"available_khr is negative: {row.available_khr}")
    if bad_grants:
        shown = ", ".join(bad_grants[:5])
        result.problems.append(
            f"{len(bad_grants)} grant(s) whose ledger entries do not match their status "
            f"or amount: {shown}"
        )
    return result


# ---------------------------------------------------------------- events


def fund_event(fund: Mapping[Any, Any], amount_khr: int | None = None) -> FundV1:
    """What events may say about a fund: codes and riel, never its name or references."""
    fields = {
        "fund_id": str(fund["id"]),
        "commune_code": fund["commune_code"],
        "fiscal_year": fund["fiscal_year"],
        "budget_khr": fund["budget_khr"],
        "max_grant_khr": fund["max_grant_khr"],
        "approval_threshold_khr": fund["approval_threshold_khr"],
        "topped_up_khr": fund["topped_up_khr"],
        "committed_khr": fund["committed_khr"],
        "disbursed_khr": fund["disbursed_khr"],
        "available_khr": fund["available_khr"],
        "version": fund["version"],
    }
    if amount_khr is not None:
        return FundToppedUpV1(**fields, amount_khr=amount_khr)
    return FundV1(**fields)


def grant_event(grant: Mapping[Any, Any]) -> GrantV1:
    """What events may say about a grant: no justification, reason, items or reference."""
    fields = {
        "grant_id": str(grant["id"]),
        "fund_id": str(grant["fund_id"]),
        "child_id": str(grant["child_id"]),
        "commune_code": grant["commune_code"],
        "category": grant["category"],
        "shock": grant["shock"],
        "amount_khr": grant["amount_khr"],
        "status": grant["status"],
        "repeat_within_30_days": grant["repeat_within_30_days"],
        "version": grant["version"],
        "requested_org": grant.get("requested_org"),
    }
    if grant["status"] == "disbursed":
        return GrantDisbursedV1(**fields, method=grant["disbursement_method"])
    return GrantV1(**fields)
