"""Event handlers: what the referrals service learns from other services' events."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle, newest_only
from libs.common.logging import get_logger
from services.referrals import store

log = get_logger(__name__)

CHILDREN_DURABLE = "referrals-children"
CHILDREN_STREAM = "REGISTRY"
CHILDREN_SUBJECT = "registry.child.>"


async def apply_child(conn: AsyncConnection, event: CloudEvent, data: ChildV1) -> None:
    """Keep the child's place, owner, status and consent; an older version never wins."""
    applied = await store.apply_child(
        conn,
        {
            "id": uuid.UUID(data.child_id),
            "commune_code": data.commune_code,
            "village_code": data.village_code,
            "place_code": data.village_code or data.commune_code,
            "owner_org": data.owner_org,
            "status": data.status,
            "data_sharing_consent": data.data_sharing_consent,
            "version": data.version,
        },
    )
    if not applied:
        log.info("child.stale_event", child_id=data.child_id, version=data.version)


# A batch applies only each child's newest version: the state applying them all leaves.
CHILD_HANDLERS: Handlers = handle(
    REGISTRY_EVENTS,
    ChildV1,
    apply_child,
    batch=newest_only(lambda c: c.child_id, lambda c: c.version, apply_child),
)
