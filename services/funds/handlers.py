"""Event handlers of the funds service: one function per consumed event type."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1, model_for
from libs.common.events.consumer import Handler
from services.funds import service
from services.funds.models import referral_shares

CHILDREN_CONSUMER = "funds-children"
REFERRALS_CONSUMER = "funds-referral-shares"


async def child_changed(conn: AsyncConnection, event: CloudEvent) -> None:
    """registry.child.*: keep the child's codes, owner, status and version (newer wins)."""
    data = model_for(event.type).model_validate(event.data)
    assert isinstance(data, ChildV1)
    await service.apply_child(conn, data)


async def referral_changed(conn: AsyncConnection, event: CloudEvent) -> None:
    """referrals.referral.*: keep the referral's state, so that its provider organisation
    sees the child while the referral is active (libs.common.access)."""
    await access.apply_referral_event(conn, referral_shares, event)


CHILD_HANDLERS: dict[str, Handler] = dict.fromkeys(REGISTRY_EVENTS, child_changed)
REFERRAL_HANDLERS: dict[str, Handler] = dict.fromkeys(access.REFERRAL_EVENT_TYPES, referral_changed)
