"""Request and response models of the referrals API (input models reject unknown fields)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from libs.common import places
from libs.common.events.referrals_events import ServiceType
from libs.common.inputs import MULTI_LINE, Input, check_merge_patch


class Urgency(StrEnum):
    emergency = "emergency"
    high = "high"
    normal = "normal"


class Status(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    completed = "completed"
    cancelled = "cancelled"


class OutcomeCode(StrEnum):
    service_provided = "service_provided"
    referred_on = "referred_on"
    child_declined = "child_declined"
    unreachable = "unreachable"
    other = "other"


def _in_gazetteer(code: str) -> str:
    if not places.exists(code):
        raise ValueError(f"{code} is not in the gazetteer")
    return code


AreaCode = Annotated[
    str,
    StringConstraints(pattern=r"^(KH|[0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{8})$"),
    AfterValidator(_in_gazetteer),
]
# Free text of several lines (reasons, justifications, notes).
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), MULTI_LINE
]
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), MULTI_LINE
]
Org = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    ),
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 \-]{5,19}$")
]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]+$",
    ),
]


class Contact(Input):
    """How a provider is reached (never in events)."""

    phone: Phone | None = None
    email: Email | None = None
    address: Annotated[str, StringConstraints(min_length=1, max_length=500), MULTI_LINE] | None = (
        None
    )


ServiceTypes = Annotated[list[ServiceType], Field(min_length=1, max_length=len(ServiceType))]
Areas = Annotated[list[AreaCode], Field(min_length=1, max_length=100)]
Capacity = Annotated[int, Field(ge=0, le=1_000_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ProviderIn(Input):
    """A service provider to put on the map."""

    name: Name
    org: Org
    service_types: ServiceTypes
    areas: Areas
    contact: Contact | None = None
    capacity: Capacity
    active: bool = True


class ProviderPatch(Input):
    """A JSON merge patch of a provider: fields present replace; null clears `contact`."""

    name: Name | None = None
    service_types: ServiceTypes | None = None
    areas: Areas | None = None
    contact: Contact | None = None
    capacity: Capacity | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> ProviderPatch:
        check_merge_patch(self, ("name", "service_types", "areas", "capacity", "active"))
        return self


class DeactivateIn(Input):
    pass


class ConsentOverride(Input):
    """Why a referral goes ahead without the caregiver's consent (government only)."""

    justification: Text


class ReferralIn(Input):
    """A child to refer for a service; routed to a provider unless one is named."""

    child_id: uuid.UUID
    service_type: ServiceType
    urgency: Urgency = Urgency.normal
    reason: Text
    provider_id: uuid.UUID | None = None
    consent_override: ConsentOverride | None = None


class AcceptIn(Input):
    pass


class DeclineIn(Input):
    reason: Text


class CancelIn(Input):
    reason: Text


class Outcome(Input):
    code: OutcomeCode
    note: Note | None = None


class CompleteIn(Input):
    outcome: Outcome


# ---------------------------------------------------------------- answers


class ProviderOut(BaseModel):
    id: str
    name: str
    org: str
    service_types: list[ServiceType]
    areas: list[str]
    contact: Contact | None
    capacity: int
    open_referrals: int
    active: bool
    created_at: datetime
    updated_at: datetime
    version: int


class ProviderPage(BaseModel):
    items: list[ProviderOut]
    next_cursor: str | None


class Actor(BaseModel):
    sub: str
    org: str


class ConsentOverrideOut(BaseModel):
    justification: str
    by: Actor


class OutcomeOut(BaseModel):
    code: OutcomeCode
    note: str | None


class ReferralOut(BaseModel):
    id: str
    child_id: str
    service_type: ServiceType
    urgency: Urgency
    reason: str
    provider_id: str
    provider_org: str
    status: Status
    due_at: datetime
    overdue: bool
    commune_code: str
    village_code: str | None
    referred_by: Actor
    consent_override: ConsentOverrideOut | None
    previous_referral_id: str | None
    decline_reason: str | None
    cancel_reason: str | None
    outcome: OutcomeOut | None
    accepted_at: datetime | None
    closed_at: datetime | None
    last_action_by: Actor | None
    created_at: datetime
    updated_at: datetime
    version: int


class DeclinedOut(ReferralOut):
    rerouted_to: str | None = Field(
        description="The new referral to the next provider, or null when none is left."
    )


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None
