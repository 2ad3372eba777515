"""Events the casework service publishes: ids, codes, roles, dates and states only.

No worker's name or phone number, no training provider, no plan action text and never a
visit's notes travel: those stay in the casework service's own tables (docs/api-guide.md#casework).
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.events.base import EventData


class WorkerRole(StrEnum):
    social_affairs_worker = "social_affairs_worker"
    community_support_worker = "community_support_worker"
    ccwc_focal_point = "ccwc_focal_point"
    ngo_case_worker = "ngo_case_worker"


class Course(StrEnum):
    child_protection_basics = "child_protection_basics"
    case_management = "case_management"
    psychosocial_first_aid = "psychosocial_first_aid"
    positive_parenting = "positive_parenting"
    disability_inclusion = "disability_inclusion"
    other = "other"


class VisitKind(StrEnum):
    home_visit = "home_visit"
    school_visit = "school_visit"
    accompaniment = "accompaniment"
    counselling = "counselling"
    follow_up = "follow_up"
    case_conference = "case_conference"


class VisitOutcome(StrEnum):
    met = "met"
    not_home = "not_home"
    refused = "refused"
    referred = "referred"


class TrainingV1(EventData):
    course: str
    completed_on: str  # YYYY-MM-DD


class ContractV1(EventData):
    org: str
    start_on: str  # YYYY-MM-DD
    end_on: str | None  # YYYY-MM-DD, inclusive; None = open-ended
    monthly_fee_khr: int


class WorkerUpsertedV1(EventData):
    """A worker as other services may know it (created or changed): the places served,
    role, trainings' courses and dates, and contracts' periods; no name or phone."""

    worker_id: str
    org: str
    org_type: str  # of the organisation that registered the worker
    role: str
    sex: str
    areas: list[str]  # gazetteer codes served
    status: str  # active | inactive
    max_caseload: int
    trainings: list[TrainingV1]
    contracts: list[ContractV1]
    version: int
    # The gateway account the worker signs in with (an account id, not a name), so the
    # registry lets that user read the children assigned to the worker; None: no account.
    username: str | None = None


class AssignmentV1(EventData):
    """A child's worker: `started` when assigned, `ended` when reassigned or released.

    `caseload` is the worker's number of active assignments after this change;
    `override` says a government principal assigned past `max_caseload` (never why)."""

    assignment_id: str
    child_id: str
    worker_id: str
    commune_code: str
    org: str  # the worker's organisation
    status: str  # active | ended
    started_on: str  # YYYY-MM-DD
    ended_on: str | None
    caseload: int
    max_caseload: int
    override: bool


class VisitV1(EventData):
    """A visit made: kind, outcome, dates; never its notes. `followups_made` lists the
    reintegration follow-ups (months after the move: 1, 3, 6, 12) this visit made."""

    visit_id: str
    child_id: str
    worker_id: str | None  # None when a government principal with no worker record made it
    commune_code: str
    date: str  # YYYY-MM-DD
    kind: str
    outcome: str
    next_visit_on: str | None
    followups_made: list[int]


class VisitOverdueV1(EventData):
    """A child whose `next_visit_on` passed without a visit (flagged once), or whose flag
    a visit cleared (`overdue: false`)."""

    child_id: str
    commune_code: str
    worker_id: str | None
    due_on: str  # YYYY-MM-DD, the missed next_visit_on
    overdue: bool
    at: str  # YYYY-MM-DD, the day flagged or cleared


class PlanV1(EventData):
    """A child's case plan after a change: goals by domain and status, never actions."""

    child_id: str
    commune_code: str
    goals: list[dict[str, str]]  # [{domain, status, due_on}]
    version: int


CASEWORK_EVENTS: dict[str, type[EventData]] = {
    "casework.worker.upserted.v1": WorkerUpsertedV1,
    "casework.assignment.started.v1": AssignmentV1,
    "casework.assignment.ended.v1": AssignmentV1,
    "casework.visit.recorded.v1": VisitV1,
    "casework.visit.overdue.v1": VisitOverdueV1,
    "casework.visit.overdue_cleared.v1": VisitOverdueV1,
    "casework.plan.updated.v1": PlanV1,
}
