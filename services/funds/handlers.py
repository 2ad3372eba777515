"""Event handlers of the funds service: one function per consumed event type."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle, newest_only
from libs.common.events.referrals_events import ReferralV1
from services.funds import service
from services.funds.models import referral_shares

CHILDREN_CONSUMER = "funds-children"
REFERRALS_CONSUMER = "funds-referral-shares"


async def child_changed(conn: AsyncConnection, event: CloudEvent, child: ChildV1) -> None:
    """registry.child.*: keep the child's codes, owner, status and version (newer wins)."""
    await service.apply_child(conn, child)


async def referral_changed(conn: AsyncConnection, event: CloudEvent, referral: ReferralV1) -> None:
    """referrals.referral.*: keep the referral's state, so that its provider organisation
    sees the child while the referral is active (libs.common.access)."""
    await access.apply_referral_event(conn, referral_shares, event, referral)


# A batch applies only each record's newest version: the state applying them all leaves.
CHILD_HANDLERS: Handlers = handle(
    REGISTRY_EVENTS,
    ChildV1,
    child_changed,
    batch=newest_only(lambda c: c.child_id, lambda c: c.version, child_changed),
)
REFERRAL_HANDLERS: Handlers = handle(
    access.REFERRAL_EVENT_TYPES,
    ReferralV1,
    referral_changed,
    batch=newest_only(lambda r: r.referral_id, lambda r: r.version, referral_changed),
)
