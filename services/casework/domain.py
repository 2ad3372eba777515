"""The casework rules: pure functions without I/O (dates, eligibility, follow-ups, who may
see and manage a worker, and what the events carry)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from libs.common.auth import COUNTRY, Principal
from libs.common.errors import Conflict, Forbidden
from libs.common.events.casework_events import (
    AssignmentV1,
    ContractV1,
    PlanV1,
    TrainingV1,
    VisitOverdueV1,
    VisitV1,
    WorkerUpsertedV1,
)

# Reintegration follow-ups: months after the move.
FOLLOWUP_MONTHS = (1, 3, 6, 12)
BASIC_TRAINING = "child_protection_basics"
DEFAULT_MAX_CASELOAD = 25

# The rules an assignment may break, each named in its 409 problem (`rule`).
RULE_INACTIVE = "worker_inactive"
RULE_CONTRACT = "no_current_contract"
RULE_TRAINING = "no_basic_training"
RULE_AREA = "outside_worker_areas"
RULE_CASELOAD = "max_caseload"
RULE_CLOSED = "child_closed"

Row = Mapping[Any, Any]


# ---------------------------------------------------- dates (Cambodia's, libs.common.clock)


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later (the month's last day when it is
    shorter: 31 January + 1 month is 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


# ---------------------------------------------------------------- reintegration follow-ups


def followup_schedule(reintegrated_on: date) -> list[tuple[int, date, date]]:
    """(month, opens_on, due_on) of each follow-up of a reintegration: follow-up k is due
    k months after the move, and its window opens when the one before it is due (the
    first's at the move)."""
    schedule = []
    opens = reintegrated_on
    for month in FOLLOWUP_MONTHS:
        due = add_months(reintegrated_on, month)
        schedule.append((month, opens, due))
        opens = due
    return schedule


def followup_made_by(
    followups: Sequence[Row], visit_on: date, outcome: str, reintegrated_on: date | None
) -> Row | None:
    """The follow-up a visit makes: with outcome `met`, on or after the move, the earliest
    unmade follow-up of the latest reintegration whose window has opened by the visit."""
    if outcome != "met" or reintegrated_on is None or visit_on < reintegrated_on:
        return None
    open_ = [
        f
        for f in followups
        if f["reintegrated_on"] == reintegrated_on
        and f["made_on"] is None
        and f["opens_on"] <= visit_on
    ]
    return min(open_, key=lambda f: f["month"]) if open_ else None


# ---------------------------------------------------------------- workers


def unique_sorted(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def _area_related(a: str, w: str) -> bool:
    """Whether a principal's area `a` covers a worker's area `w` or lies within it."""
    return a == COUNTRY or w == COUNTRY or w.startswith(a) or a.startswith(w)


def sees_worker(principal: Principal, org: str, areas: Sequence[str]) -> bool:
    """A worker is visible to principals whose areas cover or lie within one of the
    worker's areas; a partner sees only its own organisation's workers."""
    if principal.is_partner and principal.org != org:
        return False
    return any(_area_related(a, w) for a in principal.areas for w in areas)


def may_manage_worker(principal: Principal, org: str, areas: Sequence[str]) -> None:
    """403 unless the principal may create or change a worker of `org` serving `areas`:
    every area inside the principal's, and for a partner its own organisation."""
    if principal.is_partner and org != principal.org:
        raise Forbidden("a partner organisation manages only its own workers")
    outside = [a for a in areas if not principal.covers(a)]
    if outside:
        raise Forbidden("the worker's areas are outside yours")


def org_type_of(principal: Principal) -> str:
    """The organisation type recorded with a new worker: its creator's."""
    return principal.org_type


def current_contract(contracts: Sequence[Mapping[str, Any]], day: date) -> bool:
    """Whether one contract holds on `day` (start_on ≤ day ≤ end_on, open-ended when none)."""
    for c in contracts:
        start = date.fromisoformat(c["start_on"])
        end = date.fromisoformat(c["end_on"]) if c.get("end_on") else None
        if start <= day and (end is None or day <= end):
            return True
    return False


def has_basic_training(trainings: Sequence[Mapping[str, Any]], day: date) -> bool:
    """Whether the worker completed child_protection_basics (on or before `day`)."""
    return any(
        t["course"] == BASIC_TRAINING and date.fromisoformat(t["completed_on"]) <= day
        for t in trainings
    )


def _refused(rule: str, detail: str) -> Conflict:
    return Conflict(detail, rule=rule, errors=[{"field": "worker_id", "message": rule}])


def worker_ineligibility(worker: Row, day: date) -> Conflict | None:
    """Why a worker cannot take cases on `day`: inactive, no current contract, or no
    child_protection_basics training; None when it can."""
    if worker["status"] != "active":
        return _refused(RULE_INACTIVE, "the worker is inactive and cannot take cases")
    if not current_contract(worker["contracts"], day):
        return _refused(
            RULE_CONTRACT, "the worker has no current contract (today within start_on..end_on)"
        )
    if not has_basic_training(worker["trainings"], day):
        return _refused(
            RULE_TRAINING, "the worker has not completed the child_protection_basics training"
        )
    return None


def covers_child(worker: Row, commune: str, village: str | None) -> bool:
    """Whether one of the worker's areas covers the child's place."""
    return any(
        a == COUNTRY or (a == village if len(a) == 8 else commune.startswith(a))
        for a in worker["areas"]
    )


def assignment_problem(worker: Row, child: Row, day: date) -> Conflict | None:
    """Why the worker cannot take this child (the caseload aside): 409 naming the rule."""
    if child["status"] != "open":
        return Conflict("the child's case is closed; reopen it in the registry", rule=RULE_CLOSED)
    why = worker_ineligibility(worker, day)
    if why is not None:
        return why
    if not covers_child(worker, child["commune_code"], child["village_code"]):
        return _refused(RULE_AREA, "none of the worker's areas covers the child's commune")
    return None


def caseload_override(worker: Row, justification: str | None) -> bool:
    """Whether this assignment goes past the worker's max_caseload: 409 when full and not
    overridden; True when a government principal overrides with a justification."""
    if worker["caseload"] < worker["max_caseload"]:
        return False
    if justification is None:
        raise _refused(
            RULE_CASELOAD,
            f"the worker is at max_caseload ({worker['max_caseload']}); a government "
            "principal may override with override_justification",
        )
    return True


def is_worker(principal: Principal, worker: Row | None) -> bool:
    """Whether the principal is the user who is this worker (its username and org)."""
    return (
        worker is not None
        and principal.username is not None
        and worker["username"] == principal.username
        and worker["org"] == principal.org
    )


def may_record_visit(principal: Principal, owner_org: str, assigned: Row | None) -> None:
    """403 unless the principal (who reads the child) may record a visit: government staff
    covering it, the registering organisation, or the user who is its assigned worker."""
    if principal.is_partner and principal.org != owner_org and not is_worker(principal, assigned):
        raise Forbidden(
            "only government staff, the child's registering organisation or its assigned "
            "worker may record a visit"
        )


def check_override_allowed(principal: Principal, justification: str | None) -> None:
    """Only a government principal may override max_caseload (403)."""
    if justification is not None and principal.is_partner:
        raise Forbidden("only a government principal may override max_caseload")


# ---------------------------------------------------------------- events


def worker_event(w: Row) -> WorkerUpsertedV1:
    """A worker as other services may know it: its gateway account (so the registry lets
    that user read the children assigned to it), never its name, phone or training
    providers."""
    return WorkerUpsertedV1(
        worker_id=str(w["id"]),
        org=w["org"],
        org_type=w["org_type"],
        role=w["role"],
        sex=w["sex"],
        areas=list(w["areas"]),
        status=w["status"],
        max_caseload=w["max_caseload"],
        trainings=[
            TrainingV1(course=t["course"], completed_on=t["completed_on"]) for t in w["trainings"]
        ],
        contracts=[
            ContractV1(
                org=c["org"],
                start_on=c["start_on"],
                end_on=c.get("end_on"),
                monthly_fee_khr=c["monthly_fee_khr"],
            )
            for c in w["contracts"]
        ],
        version=w["version"],
        username=w["username"],
    )


def assignment_event(a: Row, caseload: int, max_caseload: int) -> AssignmentV1:
    """An assignment's event (never the override's justification)."""
    return AssignmentV1(
        assignment_id=str(a["id"]),
        child_id=str(a["child_id"]),
        worker_id=str(a["worker_id"]),
        commune_code=a["commune_code"],
        org=a["org"],
        status=a["status"],
        started_on=a["started_on"].isoformat(),
        ended_on=iso(a["ended_on"]),
        caseload=caseload,
        max_caseload=max_caseload,
        override=a["override"],
    )


def visit_event(v: Row) -> VisitV1:
    """A visit's event: never its notes."""
    return VisitV1(
        visit_id=str(v["id"]),
        child_id=str(v["child_id"]),
        worker_id=str(v["worker_id"]) if v["worker_id"] else None,
        commune_code=v["commune_code"],
        date=v["date"].isoformat(),
        kind=v["kind"],
        outcome=v["outcome"],
        next_visit_on=iso(v["next_visit_on"]),
        followups_made=list(v["followups_made"]),
    )


def overdue_event(
    child_id: Any, commune: str, worker_id: Any, due_on: date, overdue: bool, at: date
) -> VisitOverdueV1:
    return VisitOverdueV1(
        child_id=str(child_id),
        commune_code=commune,
        worker_id=str(worker_id) if worker_id else None,
        due_on=due_on.isoformat(),
        overdue=overdue,
        at=at.isoformat(),
    )


def plan_event(child: Row, plan: Row) -> PlanV1:
    """A plan's event: goals by domain, status and due date; never their actions."""
    return PlanV1(
        child_id=str(plan["id"]),
        commune_code=child["commune_code"],
        goals=[
            {"domain": g["domain"], "status": g["status"], "due_on": g["due_on"]}
            for g in plan["goals"]
        ],
        version=plan["version"],
    )
