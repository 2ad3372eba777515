"""Events the registry consumes: referrals open and close a provider's view of a child."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.consumer import Handler
from services.registry.models import referral_access


async def referral_changed(conn: AsyncConnection, event: CloudEvent) -> None:
    """Keep the referral's state: its provider's organisation reads the child while the
    referral is accepted, or completed less than 30 days ago (libs.common.access)."""
    await access.apply_referral_event(conn, referral_access, event)


REFERRAL_HANDLERS: dict[str, Handler] = dict.fromkeys(access.REFERRAL_EVENT_TYPES, referral_changed)
