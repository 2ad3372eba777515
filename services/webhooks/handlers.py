"""Event handlers of the webhooks service: keep the projections access is decided on, and
make each event's deliveries, in the consumer's transaction (with its inbox row)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.base import EventData
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle
from libs.common.events.funds_events import GrantV1
from libs.common.events.referrals_events import ReferralV1
from services.webhooks import domain, service, store
from services.webhooks.models import referral_shares

CHILDREN_CONSUMER = "webhooks-registry"
REFERRALS_CONSUMER = "webhooks-referrals"
GRANTS_CONSUMER = "webhooks-funds"
CASEWORK_CONSUMER = "webhooks-casework"


async def children_changed(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """registry.child.*: each child's newest place, owner and status; then the deliveries."""
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
    await service.fan_out(conn, events)


async def child_changed(conn: AsyncConnection, event: CloudEvent, child: ChildV1) -> None:
    await children_changed(conn, [(event, child)])


async def referrals_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]
) -> None:
    """referrals.referral.*: the referral shares (who may read the child), each referral's
    newest place, organisations and state; then the deliveries."""
    await access.apply_referral_events(conn, referral_shares, events)
    rows = [
        {
            "id": uuid.UUID(referral.referral_id),
            "child_id": uuid.UUID(referral.child_id),
            "commune_code": referral.commune_code,
            "village_code": referral.village_code,
            "provider_org": referral.provider_org,
            "referrer_org": referral.referrer_org,
            "status": referral.status,
            "version": referral.version,
        }
        for _, referral in events
    ]
    await store.upsert_referrals(conn, rows)
    await service.fan_out(conn, events)


async def referral_changed(conn: AsyncConnection, event: CloudEvent, referral: ReferralV1) -> None:
    await referrals_changed(conn, [(event, referral)])


async def grants_changed(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """funds.grant.*: each grant's child, commune, requester and state; then the
    deliveries."""
    rows = [
        {
            "id": uuid.UUID(grant.grant_id),
            "child_id": uuid.UUID(grant.child_id),
            "commune_code": grant.commune_code,
            "requested_org": grant.requested_org,
            "status": grant.status,
            "version": grant.version,
        }
        for _, grant in events
    ]
    await store.upsert_grants(conn, rows)
    await service.fan_out(conn, events)


async def grant_changed(conn: AsyncConnection, event: CloudEvent, grant: GrantV1) -> None:
    await grants_changed(conn, [(event, grant)])


CHILD_HANDLERS: Handlers = handle(
    [t for t in REGISTRY_EVENTS if t in domain.CHILD_TYPES],
    ChildV1,
    child_changed,
    batch=children_changed,
)
REFERRAL_HANDLERS: Handlers = handle(
    domain.REFERRAL_TYPES, ReferralV1, referral_changed, batch=referrals_changed
)
GRANT_HANDLERS: Handlers = handle(domain.GRANT_TYPES, GrantV1, grant_changed, batch=grants_changed)


async def casework_changed(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """casework.*: the deliveries about each child's casework (the child as projected here)."""
    await service.fan_out(conn, events)


async def casework_event(conn: AsyncConnection, event: CloudEvent, data: EventData) -> None:
    await casework_changed(conn, [(event, data)])


CASEWORK_HANDLERS: Handlers = handle(
    domain.CASEWORK_TYPES, EventData, casework_event, batch=casework_changed
)
