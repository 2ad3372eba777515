"""Request and response models of the casework API (input models reject unknown fields)."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from libs.common import places
from libs.common.events.casework_events import Course, VisitKind, VisitOutcome, WorkerRole
from libs.common.inputs import MULTI_LINE, Input, check_merge_patch

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)


class Sex(StrEnum):
    female = "female"
    male = "male"
    other = "other"


class WorkerStatus(StrEnum):
    active = "active"
    inactive = "inactive"


class AssignmentStatus(StrEnum):
    active = "active"
    ended = "ended"


class Domain(StrEnum):
    safety = "safety"
    health = "health"
    education = "education"
    family_care = "family_care"
    livelihood = "livelihood"
    psychosocial = "psychosocial"


class GoalStatus(StrEnum):
    open = "open"
    met = "met"
    dropped = "dropped"


def _in_gazetteer(code: str) -> str:
    if not places.exists(code):
        raise ValueError(f"{code} is not in the gazetteer")
    return code


def _bounded(day: date) -> date:
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"must be from {EARLIEST} to {LATEST}")
    return day


Day = Annotated[date, AfterValidator(_bounded)]
AreaCode = Annotated[
    str,
    StringConstraints(pattern=r"^(KH|[0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{8})$"),
    AfterValidator(_in_gazetteer),
]
Areas = Annotated[list[AreaCode], Field(min_length=1, max_length=100)]
Org = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 \-]{5,19}$")
]


def _casefold(value: object) -> object:
    return value.lower() if isinstance(value, str) and value.isascii() else value


# The gateway user who is the worker: as the gateway spells usernames (gateway/schemas.py),
# case-insensitive, kept in lower case.
Username = Annotated[
    str,
    BeforeValidator(_casefold),
    StringConstraints(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._@+-]*$"),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 3,
            "maxLength": 64,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$",
            "description": "The gateway user who is this worker; case-insensitive, kept in "
            "lower case.",
        }
    ),
]
Provider = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Caseload = Annotated[int, Field(ge=0, le=1000)]
Fee = Annotated[int, Field(ge=0, le=1_000_000_000)]
# Free text of several lines: a justification, a plan's action, a visit's notes.
Justification = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), MULTI_LINE
]
Action = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), MULTI_LINE
]
NOTES_MAX = 4000
Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NOTES_MAX), MULTI_LINE]


class Training(Input):
    course: Course
    completed_on: Day
    provider: Provider | None = None


class Contract(Input):
    org: Org
    start_on: Day
    end_on: Day | None = None
    monthly_fee_khr: Fee

    @model_validator(mode="after")
    def _ordered(self) -> Contract:
        if self.end_on is not None and self.end_on < self.start_on:
            raise ValueError("end_on is before start_on")
        return self


Trainings = Annotated[list[Training], Field(max_length=50)]
Contracts = Annotated[list[Contract], Field(max_length=50)]


class WorkerIn(Input):
    """A worker to register: who, where, trained and contracted how."""

    org: Org
    role: WorkerRole
    given_name: Name
    family_name: Name
    sex: Sex
    phone: Phone | None = None
    areas: Areas
    username: Username | None = None
    max_caseload: Caseload = 25
    status: WorkerStatus = WorkerStatus.active
    trainings: Trainings = Field(default_factory=list)
    contracts: Contracts = Field(default_factory=list)


class WorkerPatch(Input):
    """A JSON merge patch of a worker: fields present replace (lists whole); null clears
    phone and username."""

    role: WorkerRole | None = None
    given_name: Name | None = None
    family_name: Name | None = None
    sex: Sex | None = None
    phone: Phone | None = None
    areas: Areas | None = None
    username: Username | None = None
    max_caseload: Caseload | None = None
    status: WorkerStatus | None = None
    trainings: Trainings | None = None
    contracts: Contracts | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> WorkerPatch:
        check_merge_patch(
            self,
            (
                "role",
                "given_name",
                "family_name",
                "sex",
                "areas",
                "max_caseload",
                "status",
                "trainings",
                "contracts",
            ),
        )
        return self


class AssignmentIn(Input):
    """A child's new worker (ending the child's current assignment)."""

    child_id: uuid.UUID
    worker_id: uuid.UUID
    override_justification: Justification | None = None


class Goal(Input):
    domain: Domain
    action: Action
    due_on: Day
    status: GoalStatus = GoalStatus.open


class PlanIn(Input):
    """A child's whole case plan (it replaces the one before)."""

    goals: Annotated[list[Goal], Field(max_length=50)]


class VisitIn(Input):
    """A visit made to a child."""

    child_id: uuid.UUID
    date: Day
    kind: VisitKind
    outcome: VisitOutcome
    notes: Notes | None = None
    next_visit_on: Day | None = None

    @model_validator(mode="after")
    def _next_after(self) -> VisitIn:
        if self.next_visit_on is not None and self.next_visit_on <= self.date:
            raise ValueError("next_visit_on must be after date")
        return self


# ---------------------------------------------------------------- answers


class TrainingOut(BaseModel):
    course: Course
    completed_on: date
    provider: str | None


class ContractOut(BaseModel):
    org: str
    start_on: date
    end_on: date | None
    monthly_fee_khr: int


class WorkerOut(BaseModel):
    id: str
    org: str
    org_type: str
    role: WorkerRole
    given_name: str
    family_name: str
    sex: Sex
    phone: str | None
    areas: list[str]
    username: str | None
    max_caseload: int
    caseload: int
    status: WorkerStatus
    trainings: list[TrainingOut]
    contracts: list[ContractOut]
    created_at: datetime
    updated_at: datetime
    version: int


class WorkerPage(BaseModel):
    items: list[WorkerOut]
    next_cursor: str | None


class Actor(BaseModel):
    sub: str
    org: str


class WorkerVersionOut(BaseModel):
    """One version of a worker: the fields it changed (not their values), who, when."""

    version: int
    changed: list[str]
    by: Actor
    request_id: str
    at: datetime


class WorkerHistoryPage(BaseModel):
    items: list[WorkerVersionOut]
    next_cursor: str | None


class OverrideOut(BaseModel):
    justification: str


class AssignmentOut(BaseModel):
    id: str
    child_id: str
    worker_id: str
    commune_code: str
    village_code: str | None
    org: str
    status: AssignmentStatus
    started_on: date
    ended_on: date | None
    override: OverrideOut | None
    assigned_by: Actor
    created_at: datetime
    updated_at: datetime
    version: int


class AssignmentPage(BaseModel):
    items: list[AssignmentOut]
    next_cursor: str | None


class GoalOut(BaseModel):
    domain: Domain
    action: str
    due_on: date
    status: GoalStatus


class PlanOut(BaseModel):
    child_id: str
    goals: list[GoalOut]
    updated_by: Actor
    created_at: datetime
    updated_at: datetime
    version: int


class VisitOut(BaseModel):
    id: str
    child_id: str
    worker_id: str | None
    commune_code: str
    village_code: str | None
    date: dt.date
    kind: VisitKind
    outcome: VisitOutcome
    notes: str | None
    next_visit_on: dt.date | None
    followups_made: list[int]
    recorded_by: Actor
    created_at: datetime
    updated_at: datetime
    version: int


class VisitPage(BaseModel):
    items: list[VisitOut]
    next_cursor: str | None


class FollowupOut(BaseModel):
    month: int
    opens_on: date
    due_on: date
    made_on: date | None
    visit_id: str | None


class LastVisitOut(BaseModel):
    id: str
    date: dt.date
    kind: VisitKind
    outcome: VisitOutcome


class DueOut(BaseModel):
    """A child with a visit due: when, and whether it is overdue."""

    child_id: str
    commune_code: str
    village_code: str | None
    next_visit_on: date | None
    overdue: bool
    overdue_due_on: date | None
    last_visit_on: date | None
    updated_at: datetime


class DuePage(BaseModel):
    items: list[DueOut]
    next_cursor: str | None


class CaseOut(BaseModel):
    """A child's casework: worker, plan, visits due and reintegration follow-ups."""

    child_id: str
    commune_code: str
    village_code: str | None
    status: str
    care_setting: str
    assignment: AssignmentOut | None
    plan: PlanOut | None
    last_visit: LastVisitOut | None
    next_visit_on: date | None
    overdue: bool
    overdue_due_on: date | None
    reintegrated_on: date | None
    followups: list[FollowupOut]
    updated_at: datetime
