"""Event handlers: what the casework service learns from other services' events (the
children and their reintegrations from the registry, read access from referrals)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle
from libs.common.events.referrals_events import ReferralV1
from libs.common.events.registry_events import ChildReintegratedV1
from libs.common.logging import get_logger
from libs.common.store import newest_rows
from services.casework import domain, store
from services.casework.models import referral_shares

log = get_logger(__name__)

CHILDREN_DURABLE = "casework-children"
CHILDREN_STREAM = "REGISTRY"
CHILDREN_SUBJECT = "registry.child.>"
REFERRALS_DURABLE = "casework-referrals"
REFERRALS_STREAM = "REFERRALS"
REFERRALS_SUBJECT = "referrals.referral.>"
REINTEGRATED = "registry.child.reintegrated.v1"


def _child_row(data: ChildV1) -> dict[str, Any]:
    return {
        "id": uuid.UUID(data.child_id),
        "commune_code": data.commune_code,
        "village_code": data.village_code,
        "owner_org": data.owner_org,
        "status": data.status,
        "care_setting": data.care_setting,
        "sex": data.sex,
        "birth_month": data.birth_month,
        "version": data.version,
    }


async def apply_children(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """Keep each child's place, owner, status, care setting, sex and birth month from a run
    of events in one statement (its newest version wins); then give each reintegration
    its follow-ups."""
    rows = newest_rows([_child_row(data) for _, data in events], "id")
    await store.apply_children(conn, rows)
    for event, data in events:
        if event.type == REINTEGRATED and isinstance(data, ChildReintegratedV1):
            await apply_reintegration(conn, data)


async def apply_reintegration(conn: AsyncConnection, data: ChildReintegratedV1) -> None:
    """A child moved from residential care into a family: follow-ups due 1, 3, 6 and 12
    calendar months after the move (a later move gets a fresh set)."""
    child_id = uuid.UUID(data.child_id)
    moved = date.fromisoformat(data.reintegrated_on)
    rows = [
        {
            "id": uuid.uuid4(),
            "child_id": child_id,
            "reintegrated_on": moved,
            "month": month,
            "opens_on": opens,
            "due_on": due,
        }
        for month, opens, due in domain.followup_schedule(moved)
    ]
    await store.insert_followups(conn, rows)
    if not await store.reintegrate(conn, child_id, moved):
        log.info("child.reintegration_not_latest", child_id=data.child_id)


async def apply_child(conn: AsyncConnection, event: CloudEvent, data: ChildV1) -> None:
    """One event: `apply_children` of it alone."""
    await apply_children(conn, [(event, data)])


async def apply_referrals(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """referrals.referral.*: who may read which child through a referral."""
    await access.apply_referral_events(conn, referral_shares, events)


async def apply_referral(conn: AsyncConnection, event: CloudEvent, data: ReferralV1) -> None:
    await apply_referrals(conn, [(event, data)])


CHILD_HANDLERS: Handlers = handle(REGISTRY_EVENTS, ChildV1, apply_child, batch=apply_children)
REFERRAL_HANDLERS: Handlers = handle(
    access.REFERRAL_EVENT_TYPES, ReferralV1, apply_referral, batch=apply_referrals
)
