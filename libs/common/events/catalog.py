"""The event catalogue: every event type and the model of its data, versioned.

Events carry the minimum (SPEC §8): ids, codes, sex, birth month, vulnerabilities,
risk level, amounts and states. Never names, phone numbers or free text.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    """Base of every event's data: closed, so a stray field (a name, say) cannot slip in."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChildV1(EventData):
    """A child as other services may know it."""

    child_id: str
    case_number: str
    commune_code: str
    village_code: str | None
    sex: str
    birth_month: str  # YYYY-MM
    vulnerabilities: list[str]
    risk_level: str
    status: str
    owner_org: str
    data_sharing_consent: bool
    version: int
    registered_on: str  # YYYY-MM-DD, the registration date


class ChildUpdatedV1(ChildV1):
    """A child after a change; `changed` names the fields (never their values)."""

    changed: list[str]


REGISTRY_EVENTS: dict[str, type[EventData]] = {
    "registry.child.registered.v1": ChildV1,
    "registry.child.updated.v1": ChildUpdatedV1,
    "registry.child.closed.v1": ChildV1,
    "registry.child.reopened.v1": ChildV1,
}


def _catalog() -> dict[str, type[EventData]]:
    from libs.common.events.funds_events import FUNDS_EVENTS
    from libs.common.events.referrals_events import REFERRALS_EVENTS

    return {**REGISTRY_EVENTS, **REFERRALS_EVENTS, **FUNDS_EVENTS}


CATALOG: dict[str, type[EventData]] = _catalog()

STREAMS: dict[str, list[str]] = {
    "REGISTRY": ["registry.>"],
    "REFERRALS": ["referrals.>"],
    "FUNDS": ["funds.>"],
}


def model_for(type_: str) -> type[EventData]:
    """The data model of an event type, else KeyError."""
    return CATALOG[type_]
