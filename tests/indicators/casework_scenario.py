"""The casework scenario (docs/api-guide.md#casework, issue 14): three months (April, May,
June 2026, the second quarter) and two communes in two districts of one province, as events only.

Places: commune A = 120101 (district 1201) and commune C = 120201 (district 1202), both in
province 12 (Phnom Penh); so district 1201 is A, district 1202 is C, and province 12 and KH
are A + C for the counts of children, while the workers are a distinct count at the places
they serve (a worker serving the province is one worker of A, of C, of each district, of 12
and of KH).

Children (registered 2026-03-15 unless said; age bands at each month's end):
  c1 A F born 2018-05 family            F_Y5_9
  c2 A M born 2011-05 family            M_Y10_14 in April, M_Y15_17 from May (turns 15)
  c3 C F born 2022-06 family            F_Y0_4
  c4 C M born 2010-08 residential       M_Y15_17; case closed 2 June
  c5 A F born 2016-03 residential       F_Y10_14; reintegrated (kinship) 10 May
  c6 C M born 2019-09 residential       M_Y5_9; stays in residential care
  c7 C M born 2014-02 residential (registered 20 March) M_Y10_14; reintegrated (foster)
     28 April (the event at 20:00 UTC on the 27th, 03:00 on the 28th in Cambodia)
  c8 A F born 2009-07 residential (registered 10 January) F_Y15_17; reintegrated (family)
     15 February, first follow-up made 16 March, third 5 June
Workers:
  w1 community_support_worker, serves A, contract all 2026, basic training Feb, max 2
  w2 ngo_case_worker, serves district 1202, contract April-May, basic training 10 May (v2,
     published before v1), max 1
  w3 social_affairs_worker, serves A and C, open contract, no basic training, max 25;
     inactive from 5 June (v2)
  w4 ccwc_focal_point, serves province 12 (from 20 April), contract from 15 May, trained
     2025, max 1
Assignments: a1 c1-w1 5 April-10 June (its end published before its start); a2 c2-w1
20 April; a3 c5-w1 3 May (override, caseload 3 of 2); a4 c3-w2 10 April-1 June; a5 c4-w3
12 April; a6 c3-w4 1 June; a7 c6-w4 2 June (override, caseload 2 of 1).
Visits: v1 c1 A home 8 April; v2 c2 A school 30 April (recorded 2 May); v3 c3 C home
15 April; v4 c1 A home 6 May; v5 c5 A follow_up 12 June, first follow-up (published by
the reintegration test); v6 c4 C counselling 20 May; v7 c6 C case_conference 3 June; v8 c3
C home 25 June; v9 c8 A follow_up 16 March [1]; v10 c7 C follow_up 2 June [1]; v11 c8 A
follow_up 5 June [3].
Overdue: c2 flagged 25 April, cleared 10 May; c3 flagged 20 May, cleared 25 June (the
clearing published first); c6 flagged 20 June.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from libs.common.events import CloudEvent
from libs.common.events.casework_events import (
    AssignmentV1,
    ContractV1,
    TrainingV1,
    VisitOverdueV1,
    VisitV1,
    WorkerUpsertedV1,
)
from libs.common.events.registry_events import ChildReintegratedV1, ChildUpdatedV1, ChildV1
from tests.indicators.conftest import event, uuid_of

A, C = "120101", "120201"
DISTRICT_A, DISTRICT_C, PROVINCE = "1201", "1202", "12"

CHILDREN: dict[str, dict[str, Any]] = {
    "c1": {"commune": A, "sex": "female", "birth": "2018-05", "care": "family"},
    "c2": {"commune": A, "sex": "male", "birth": "2011-05", "care": "family"},
    "c3": {"commune": C, "sex": "female", "birth": "2022-06", "care": "family"},
    "c4": {"commune": C, "sex": "male", "birth": "2010-08", "care": "residential_institution"},
    "c5": {"commune": A, "sex": "female", "birth": "2016-03", "care": "residential_institution"},
    "c6": {"commune": C, "sex": "male", "birth": "2019-09", "care": "residential_institution"},
    "c7": {
        "commune": C,
        "sex": "male",
        "birth": "2014-02",
        "care": "residential_institution",
        "registered_on": "2026-03-20",
    },
    "c8": {
        "commune": A,
        "sex": "female",
        "birth": "2009-07",
        "care": "residential_institution",
        "registered_on": "2026-01-10",
    },
}


def cid(name: str) -> str:
    return uuid_of(f"casework-{name}")


def _child_data(name: str, version: int, **kw: Any) -> dict[str, Any]:
    c = CHILDREN[name]
    data: dict[str, Any] = {
        "child_id": cid(name),
        "case_number": f"{c['commune']}-{name}",
        "commune_code": c["commune"],
        "village_code": None,
        "sex": c["sex"],
        "birth_month": c["birth"],
        "vulnerabilities": [],
        "risk_level": "low",
        "status": "open",
        "owner_org": "moswvy",
        "data_sharing_consent": True,
        "version": version,
        "registered_on": c.get("registered_on", "2026-03-15"),
        "care_setting": c["care"],
    }
    data.update(kw)
    return data


def registered(name: str) -> CloudEvent:
    data = ChildV1(**_child_data(name, 1))
    when = f"{CHILDREN[name].get('registered_on', '2026-03-15')}T03:00:00Z"
    return event("registry", "registry.child.registered.v1", cid(name), data, when)


def updated(name: str, version: int, when: str, changed: list[str], **kw: Any) -> CloudEvent:
    data = ChildUpdatedV1(**_child_data(name, version, **kw), changed=changed)
    return event("registry", "registry.child.updated.v1", cid(name), data, when)


def closed(name: str, version: int, when: str) -> CloudEvent:
    data = ChildV1(**_child_data(name, version, status="closed"))
    return event("registry", "registry.child.closed.v1", cid(name), data, when)


def reintegration(name: str, version: int, when: str, into: str, on: str) -> list[CloudEvent]:
    """The `updated` and `reintegrated` events of one PATCH, as the registry publishes them."""
    data = ChildReintegratedV1(
        **_child_data(name, version, care_setting=into),
        from_care_setting="residential_institution",
        reintegrated_on=on,
    )
    return [
        updated(name, version, when, ["care_setting"], care_setting=into),
        event("registry", "registry.child.reintegrated.v1", cid(name), data, when),
    ]


def worker(
    name: str,
    version: int,
    when: str,
    *,
    role: str,
    areas: list[str],
    contracts: list[tuple[str, str | None]],
    trainings: list[tuple[str, str]] = (),  # type: ignore[assignment]
    status: str = "active",
    max_caseload: int = 25,
) -> CloudEvent:
    data = WorkerUpsertedV1(
        worker_id=cid(name),
        org="moswvy",
        org_type="government",
        role=role,
        sex="female",
        areas=areas,
        status=status,
        max_caseload=max_caseload,
        trainings=[TrainingV1(course=c, completed_on=d) for c, d in trainings],
        contracts=[
            ContractV1(org="moswvy", start_on=s, end_on=e, monthly_fee_khr=400_000)
            for s, e in contracts
        ],
        version=version,
    )
    return event("casework", "casework.worker.upserted.v1", cid(name), data, when)


def assignment(
    name: str,
    child: str,
    worker_name: str,
    *,
    started_on: str,
    ended_on: str | None = None,
    caseload: int,
    max_caseload: int,
    override: bool = False,
) -> CloudEvent:
    verb = "ended" if ended_on else "started"
    data = AssignmentV1(
        assignment_id=cid(name),
        child_id=cid(child),
        worker_id=cid(worker_name),
        commune_code=CHILDREN[child]["commune"],
        org="moswvy",
        status="ended" if ended_on else "active",
        started_on=started_on,
        ended_on=ended_on,
        caseload=caseload,
        max_caseload=max_caseload,
        override=override,
    )
    return event(
        "casework",
        f"casework.assignment.{verb}.v1",
        cid(name),
        data,
        f"{ended_on or started_on}T04:00:00Z",
    )


def visit(
    name: str,
    child: str,
    day: str,
    kind: str,
    *,
    followups: list[int] = (),  # type: ignore[assignment]
    recorded: str | None = None,
) -> CloudEvent:
    data = VisitV1(
        visit_id=cid(name),
        child_id=cid(child),
        worker_id=None,
        commune_code=CHILDREN[child]["commune"],
        date=day,
        kind=kind,
        outcome="met",
        next_visit_on=None,
        followups_made=list(followups),
    )
    when = recorded or f"{day}T05:00:00Z"
    return event("casework", "casework.visit.recorded.v1", cid(name), data, when)


def flag(child: str, day: str, *, overdue: bool, due_on: str) -> CloudEvent:
    data = VisitOverdueV1(
        child_id=cid(child),
        commune_code=CHILDREN[child]["commune"],
        worker_id=None,
        due_on=due_on,
        overdue=overdue,
        at=day,
    )
    verb = "overdue" if overdue else "overdue_cleared"
    return event("casework", f"casework.visit.{verb}.v1", cid(child), data, f"{day}T01:00:00Z")


def scenario_events() -> list[CloudEvent]:
    """Every event of the scenario but the first follow-up of c5 (`first_followup_of_c5`)."""
    registry: list[CloudEvent] = [registered(n) for n in CHILDREN]
    registry += [
        closed("c4", 2, "2026-06-02T03:00:00Z"),
        *reintegration("c5", 2, "2026-05-10T03:00:00Z", "kinship", "2026-05-10"),
        *reintegration("c7", 2, "2026-04-27T20:00:00Z", "foster", "2026-04-28"),
        *reintegration("c8", 2, "2026-02-15T03:00:00Z", "family", "2026-02-15"),
    ]
    cpb = "child_protection_basics"
    workers = [
        worker(
            "w1",
            1,
            "2026-03-01T03:00:00Z",
            role="community_support_worker",
            areas=[A],
            contracts=[("2026-01-01", "2026-12-31")],
            trainings=[(cpb, "2026-02-01")],
            max_caseload=2,
        ),
        # w2's training (v2) arrives before its creation (v1)
        worker(
            "w2",
            2,
            "2026-05-10T05:00:00Z",
            role="ngo_case_worker",
            areas=[DISTRICT_C],
            contracts=[("2026-04-01", "2026-05-31")],
            trainings=[("case_management", "2026-03-01"), (cpb, "2026-05-10")],
            max_caseload=1,
        ),
        worker(
            "w2",
            1,
            "2026-03-20T03:00:00Z",
            role="ngo_case_worker",
            areas=[DISTRICT_C],
            contracts=[("2026-04-01", "2026-05-31")],
            trainings=[("case_management", "2026-03-01")],
            max_caseload=1,
        ),
        worker(
            "w3",
            1,
            "2026-03-05T03:00:00Z",
            role="social_affairs_worker",
            areas=[A, C],
            contracts=[("2025-01-01", None)],
        ),
        worker(
            "w3",
            2,
            "2026-06-05T03:00:00Z",
            role="social_affairs_worker",
            areas=[A, C],
            contracts=[("2025-01-01", None)],
            status="inactive",
        ),
        worker(
            "w4",
            1,
            "2026-04-20T03:00:00Z",
            role="ccwc_focal_point",
            areas=[PROVINCE],
            contracts=[("2026-05-15", None)],
            trainings=[(cpb, "2025-12-01")],
            max_caseload=1,
        ),
    ]
    assignments = [
        # a1's end arrives before its start
        assignment(
            "a1",
            "c1",
            "w1",
            started_on="2026-04-05",
            ended_on="2026-06-10",
            caseload=2,
            max_caseload=2,
        ),
        assignment("a1", "c1", "w1", started_on="2026-04-05", caseload=1, max_caseload=2),
        assignment("a2", "c2", "w1", started_on="2026-04-20", caseload=2, max_caseload=2),
        assignment(
            "a3", "c5", "w1", started_on="2026-05-03", caseload=3, max_caseload=2, override=True
        ),
        assignment("a4", "c3", "w2", started_on="2026-04-10", caseload=1, max_caseload=1),
        assignment(
            "a4",
            "c3",
            "w2",
            started_on="2026-04-10",
            ended_on="2026-06-01",
            caseload=0,
            max_caseload=1,
        ),
        assignment("a5", "c4", "w3", started_on="2026-04-12", caseload=1, max_caseload=25),
        assignment("a6", "c3", "w4", started_on="2026-06-01", caseload=1, max_caseload=1),
        assignment(
            "a7", "c6", "w4", started_on="2026-06-02", caseload=2, max_caseload=1, override=True
        ),
    ]
    visits = [
        visit("v1", "c1", "2026-04-08", "home_visit"),
        visit("v2", "c2", "2026-04-30", "school_visit", recorded="2026-05-02T03:00:00Z"),
        visit("v3", "c3", "2026-04-15", "home_visit"),
        visit("v4", "c1", "2026-05-06", "home_visit"),
        visit("v6", "c4", "2026-05-20", "counselling"),
        visit("v7", "c6", "2026-06-03", "case_conference"),
        visit("v8", "c3", "2026-06-25", "home_visit"),
        visit("v9", "c8", "2026-03-16", "follow_up", followups=[1]),
        visit("v10", "c7", "2026-06-02", "follow_up", followups=[1]),
        visit("v11", "c8", "2026-06-05", "follow_up", followups=[3]),
    ]
    flags = [
        flag("c2", "2026-04-25", overdue=True, due_on="2026-04-24"),
        flag("c2", "2026-05-10", overdue=False, due_on="2026-04-24"),
        # the clearing arrives before the flag
        flag("c3", "2026-06-25", overdue=False, due_on="2026-05-19"),
        flag("c3", "2026-05-20", overdue=True, due_on="2026-05-19"),
        flag("c6", "2026-06-20", overdue=True, due_on="2026-06-19"),
    ]
    # the casework stream first: the streams are independent
    out: list[CloudEvent] = [*workers, *assignments, *visits, *flags]
    out += registry
    return out


@cache
def first_followup_of_c5() -> CloudEvent:
    """c5's first follow-up (due 10 June, a month after its move), made 12 June: one event
    (one id), however often it is published."""
    return visit("v5", "c5", "2026-06-12", "follow_up", followups=[1])
