"""Request and response models of the registry API (input models reject unknown fields)."""

from __future__ import annotations

import datetime as dt
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from libs.common import places
from libs.common.events.registry_events import CareSetting, Vulnerability
from libs.common.inputs import MULTI_LINE, CommuneCode, Input, VillageCode, check_merge_patch


class Sex(StrEnum):
    female = "female"
    male = "male"


class RiskLevel(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class Status(StrEnum):
    open = "open"
    closed = "closed"


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 \-]{5,19}$")
]
IdPoorNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9A-Za-z\-]{1,40}$")
]


class Caregiver(Input):
    name: Name
    relationship: ShortText
    phone: Phone | None = None


class Consent(Input):
    data_sharing: bool
    given_by: ShortText | None = None
    date: dt.date | None = None


class ExternalIdIn(Input):
    system: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    value: Annotated[str, StringConstraints(min_length=1, max_length=200)]


def _check_place(commune_code: str | None, village_code: str | None) -> None:
    if village_code is not None:
        if not places.exists(village_code):
            raise ValueError("village_code is not in the gazetteer")
        if commune_code is not None and not places.listed_in(village_code, commune_code):
            raise ValueError("village_code is not in commune_code")
    elif commune_code is not None and not places.exists(commune_code):
        raise ValueError("commune_code is not in the gazetteer")


class ChildIn(Input):
    """A child to register."""

    given_name: Name
    family_name: Name
    sex: Sex
    birth_date: date
    birth_date_estimated: bool = False
    village_code: VillageCode | None = None
    commune_code: CommuneCode | None = None
    caregiver: Caregiver | None = None
    household_id_poor: IdPoorNumber | None = None
    id_poor_level: Literal[1, 2] | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list, max_length=11)
    risk_level: RiskLevel = RiskLevel.low
    care_setting: CareSetting = Field(
        CareSetting.family,
        description="Where the child lives. A later change from residential_institution to "
        "family, kinship or foster is a reintegration.",
    )
    consent: Consent
    external_ids: list[ExternalIdIn] = Field(default_factory=list, max_length=10)
    registered_on: date | None = Field(
        None,
        description="The date the case was opened, for a partner importing its existing "
        "caseload: on or after the birth date and 2000-01-01, not after today (Cambodia). "
        "The child must be under 18 on it, and the indicators count the child in its month. "
        "Today when not given.",
    )

    @model_validator(mode="after")
    def _place(self) -> ChildIn:
        if self.village_code is None and self.commune_code is None:
            raise ValueError("give village_code or commune_code")
        _check_place(self.commune_code, self.village_code)
        return self

    @property
    def commune(self) -> str:
        """The child's commune: given, or the village's."""
        return self.commune_code or places.commune_of(self.village_code or "")


# The fields a child always has, in the order a refused patch names them: a patch may
# change them, not clear them.
NOT_NULLABLE_IN_PATCH = (
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "birth_date_estimated",
    "vulnerabilities",
    "risk_level",
    "care_setting",
    "consent",
)


class ChildPatch(Input):
    """A JSON merge patch of a child: fields present replace, null clears an optional one."""

    given_name: Name | None = None
    family_name: Name | None = None
    sex: Sex | None = None
    birth_date: date | None = None
    birth_date_estimated: bool | None = None
    village_code: VillageCode | None = None
    commune_code: CommuneCode | None = None
    caregiver: Caregiver | None = None
    household_id_poor: IdPoorNumber | None = None
    id_poor_level: Literal[1, 2] | None = None
    vulnerabilities: list[Vulnerability] | None = Field(default=None, max_length=11)
    risk_level: RiskLevel | None = None
    care_setting: CareSetting | None = None
    consent: Consent | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> ChildPatch:
        check_merge_patch(self, NOT_NULLABLE_IN_PATCH)
        _check_place(self.commune_code, self.village_code)
        return self


class CloseIn(Input):
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MULTI_LINE
    ]


class ReopenIn(Input):
    pass


class BatchIn(BaseModel):
    """Up to 1,000 children; each item is checked as a `ChildIn` (an `Input`: no control
    characters) on its own, and answered with its own result."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class DuplicateOut(BaseModel):
    id: str
    case_number: str
    score: float
    reasons: list[str]


class CaregiverOut(BaseModel):
    name: str
    relationship: str
    phone: str | None


class ConsentOut(BaseModel):
    data_sharing: bool
    given_by: str | None
    date: dt.date | None


class ExternalIdOut(BaseModel):
    system: str
    value: str


class ChildOut(BaseModel):
    """A child record as the API shows it."""

    id: str
    case_number: str
    given_name: str
    family_name: str
    sex: Sex
    birth_date: date
    birth_date_estimated: bool
    village_code: str | None
    commune_code: str
    caregiver: CaregiverOut | None
    household_id_poor: str | None
    id_poor_level: int | None
    vulnerabilities: list[Vulnerability]
    risk_level: RiskLevel
    care_setting: CareSetting
    consent: ConsentOut
    status: Status
    close_reason: str | None
    owner_org: str
    external_ids: list[ExternalIdOut]
    registered_on: date
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    possible_duplicates: list[DuplicateOut] | None = Field(
        default=None, description="A new child's likely duplicates: at most 10, best first."
    )


class ChildPage(BaseModel):
    items: list[ChildOut]
    next_cursor: str | None


class BatchResult(BaseModel):
    """One child of a batch: created, an existing child its external id names, or why not."""

    status: Literal["created", "existing", "error"]
    id: str | None = Field(default=None, description="The child's id, unless an error.")
    problem: dict[str, Any] | None = Field(
        default=None, description="The problem document (RFC 9457) of an error."
    )


class BatchOut(BaseModel):
    """One result per item, in the batch's order."""

    results: list[BatchResult]


class DuplicatesOut(BaseModel):
    """Likely duplicates of a child: at most 10, best first."""

    items: list[DuplicateOut]


class ActorOut(BaseModel):
    sub: str
    org: str


class HistoryEntryOut(BaseModel):
    """One change of a child: its version after, who, when and the old and new values."""

    version: int
    action: str
    at: dt.datetime
    by: ActorOut
    request_id: str
    changes: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[HistoryEntryOut]
    next_cursor: str | None


class AuditEntryOut(BaseModel):
    """One read or write of a child; `chain_seq` and `hash` once the sealer chained it."""

    seq: int
    at: dt.datetime
    principal: ActorOut
    action: str
    child_id: str
    request_id: str
    chain_seq: int | None
    hash: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class AuditVerdictOut(BaseModel):
    """The audit chain recomputed: whether it holds, and the first entry that does not."""

    ok: bool
    checked: int
    unsealed: int
    head_chain_seq: int
    problem: str | None
    bad_seq: int | None
