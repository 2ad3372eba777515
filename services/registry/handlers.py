"""Events the registry consumes: referrals open and close a provider's view of a child."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import CloudEvent
from libs.common.events.consumer import Handler
from services.registry import store

# SPEC §6: an accepted referral lets the provider's organisation read the child
# until the referral is cancelled or declined.
_GRANTS = {"accepted": True, "completed": True, "declined": False, "cancelled": False}


async def referral_changed(conn: AsyncConnection, event: CloudEvent) -> None:
    """Grant or withdraw the provider organisation's access to the referred child."""
    data = event.data
    await store.apply_referral(
        conn,
        data["referral_id"],
        data["child_id"],
        data["provider_org"],
        _GRANTS[data["status"]],
        int(data["version"]),
    )


REFERRAL_HANDLERS: dict[str, Handler] = {
    f"referrals.referral.{verb}.v1": referral_changed for verb in _GRANTS
}
