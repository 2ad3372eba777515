"""Event handlers of the funds service: one function per consumed event type."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle
from libs.common.events.referrals_events import ReferralV1
from services.funds import service, store
from services.funds.models import referral_shares

CHILDREN_CONSUMER = "funds-children"
REFERRALS_CONSUMER = "funds-referral-shares"


async def child_changed(conn: AsyncConnection, event: CloudEvent, child: ChildV1) -> None:
    """registry.child.*: keep the child's codes, owner, status and version (newer wins)."""
    await service.apply_child(conn, child)


async def children_changed(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """A run of registry.child.* events in one statement: each child's newest version."""
    rows = [
        {
            "id": uuid.UUID(child.child_id),
            "commune_code": child.commune_code,
            "village_code": child.village_code,
            "owner_org": child.owner_org,
            "status": child.status,
            "version": child.version,
        }
        for _, child in events
    ]
    await store.upsert_children(conn, rows)


async def referral_changed(conn: AsyncConnection, event: CloudEvent, referral: ReferralV1) -> None:
    """referrals.referral.*: keep the referral's state, so that its provider organisation
    sees the child while the referral is active (libs.common.access)."""
    await access.apply_referral_event(conn, referral_shares, event, referral)


async def referrals_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]
) -> None:
    """A run of referrals.referral.* events in one statement: each referral's newest."""
    await access.apply_referral_events(conn, referral_shares, events)


# A batch applies only each record's newest version: the state applying them all leaves.
CHILD_HANDLERS: Handlers = handle(REGISTRY_EVENTS, ChildV1, child_changed, batch=children_changed)
REFERRAL_HANDLERS: Handlers = handle(
    access.REFERRAL_EVENT_TYPES, ReferralV1, referral_changed, batch=referrals_changed
)
