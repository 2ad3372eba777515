"""Event handlers: what the referrals service learns from other services' events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1
from libs.common.events.consumer import Handlers, handle
from libs.common.logging import get_logger
from libs.common.store import newest_rows
from services.referrals import store

log = get_logger(__name__)

CHILDREN_DURABLE = "referrals-children"
CHILDREN_STREAM = "REGISTRY"
CHILDREN_SUBJECT = "registry.child.>"


def _child_row(data: ChildV1) -> dict[str, Any]:
    return {
        "id": uuid.UUID(data.child_id),
        "commune_code": data.commune_code,
        "village_code": data.village_code,
        "place_code": data.village_code or data.commune_code,
        "owner_org": data.owner_org,
        "status": data.status,
        "data_sharing_consent": data.data_sharing_consent,
        "version": data.version,
    }


async def apply_children(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """Keep each child's place, owner, status and consent from a run of events, in one
    statement: its newest version; an older version than the stored one never wins."""
    rows = newest_rows([_child_row(data) for _, data in events], "id")
    written = await store.apply_children(conn, rows)
    for row in rows:
        if row["id"] not in written:
            log.info("child.stale_event", child_id=str(row["id"]), version=row["version"])


async def apply_child(conn: AsyncConnection, event: CloudEvent, data: ChildV1) -> None:
    """One event: `apply_children` of it alone."""
    await apply_children(conn, [(event, data)])


# A batch applies only each child's newest version: the state applying them all leaves.
CHILD_HANDLERS: Handlers = handle(REGISTRY_EVENTS, ChildV1, apply_child, batch=apply_children)
