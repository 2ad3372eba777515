"""The event catalogue: every event type and the model of its data, versioned.

Each producing service's events live in a module of their own (`registry_events`,
`referrals_events`, `funds_events`, `casework_events`) on the shared base
(`base.EventData`); this module only gathers them. Events carry the minimum
(docs/api-guide.md#events): ids, codes, sex, birth month, vulnerabilities, risk level,
amounts and states. Never names, phone numbers or free text.
"""

from __future__ import annotations

from libs.common.events.base import EventData
from libs.common.events.casework_events import CASEWORK_EVENTS
from libs.common.events.funds_events import FUNDS_EVENTS
from libs.common.events.referrals_events import REFERRALS_EVENTS
from libs.common.events.registry_events import REGISTRY_EVENTS, ChildUpdatedV1, ChildV1

__all__ = [
    "CASEWORK_EVENTS",
    "CATALOG",
    "FUNDS_EVENTS",
    "REFERRALS_EVENTS",
    "REGISTRY_EVENTS",
    "STREAMS",
    "ChildUpdatedV1",
    "ChildV1",
    "EventData",
    "model_for",
]

CATALOG: dict[str, type[EventData]] = {
    **REGISTRY_EVENTS,
    **REFERRALS_EVENTS,
    **FUNDS_EVENTS,
    **CASEWORK_EVENTS,
}

STREAMS: dict[str, list[str]] = {
    "REGISTRY": ["registry.>"],
    "REFERRALS": ["referrals.>"],
    "FUNDS": ["funds.>"],
    "CASEWORK": ["casework.>"],
}


def model_for(type_: str) -> type[EventData]:
    """The data model of an event type, else KeyError."""
    return CATALOG[type_]
