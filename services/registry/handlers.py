"""Events the registry consumes: referrals open and close a provider's view of a child."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.consumer import Handlers, handle
from libs.common.events.referrals_events import ReferralV1
from services.registry.models import referral_access


async def referral_changed(conn: AsyncConnection, event: CloudEvent, referral: ReferralV1) -> None:
    """Keep the referral's state: its provider's organisation reads the child while the
    referral is accepted, or completed less than 30 days ago (libs.common.access)."""
    await access.apply_referral_event(conn, referral_access, event, referral)


async def referrals_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, ReferralV1]]
) -> None:
    """A batch of referral events in one statement: each referral's newest version."""
    await access.apply_referral_events(conn, referral_access, events)


REFERRAL_HANDLERS: Handlers = handle(
    access.REFERRAL_EVENT_TYPES, ReferralV1, referral_changed, batch=referrals_changed
)
