"""Request and response models of the webhooks API (input models reject unknown fields)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

from libs.common.inputs import Input, check_merge_patch, one_of
from services.webhooks.domain import EVENT_TYPES, TEST_TYPE
from services.webhooks.urls import MAX_URL_LENGTH

if TYPE_CHECKING:
    EventType = str
else:
    EventType = one_of(EVENT_TYPES)
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH)
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    dropped = "dropped"


class EndpointIn(Input):
    """A new endpoint: where to send, which events, and a note for your own staff."""

    url: Url = Field(
        description=f"https:// only, at most {MAX_URL_LENGTH:,} characters, no user "
        "information; the host must not be or resolve to a private, loopback or link-local "
        "address."
    )
    event_types: EventTypes
    description: Description | None = None

    @model_validator(mode="after")
    def _unique(self) -> EndpointIn:
        if len(set(self.event_types)) != len(self.event_types):
            raise ValueError("event_types: each type at most once")
        return self


class EndpointPatch(Input):
    """A JSON merge patch of an endpoint; `enabled: true` re-enables a disabled one."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _rules(self) -> EndpointPatch:
        check_merge_patch(self, ("url", "event_types", "enabled"))
        if self.event_types is not None and len(set(self.event_types)) != len(self.event_types):
            raise ValueError("event_types: each type at most once")
        return self


class EndpointOut(BaseModel):
    id: str
    url: str
    event_types: list[EventType]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="manual, gone (410) or failing (5 days)")
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation also signs"
    )
    created_at: datetime
    updated_at: datetime
    version: int


class EndpointCreatedOut(EndpointOut):
    secret: str | None = Field(
        description="The signing secret (whsec_…), shown in this answer only; a replay of "
        "the request with the same Idempotency-Key answers null"
    )


class EndpointPage(BaseModel):
    items: list[EndpointOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    at: datetime
    outcome: str = Field(description="delivered, failed or dropped")
    status_code: int | None
    latency_ms: int | None
    error: str | None = Field(description="The error class when no answer came (timeout, …)")


class DeliveryOut(BaseModel):
    id: str = Field(description="The webhook-id of every attempt")
    event_id: str
    event_type: Annotated[str, Field(json_schema_extra={"enum": [*EVENT_TYPES, TEST_TYPE]})]
    record_type: str | None
    record_id: str | None
    record_version: int | None
    status: DeliveryStatus
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
