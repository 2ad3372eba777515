"""Event handlers of the funds service: one function per consumed event type."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import CloudEvent
from libs.common.events.catalog import REGISTRY_EVENTS, ChildV1, model_for
from libs.common.events.consumer import Handler
from services.funds import service

CHILDREN_CONSUMER = "funds-children"


async def child_changed(conn: AsyncConnection, event: CloudEvent) -> None:
    """registry.child.*: keep the child's codes, owner, status and version (newer wins)."""
    data = model_for(event.type).model_validate(event.data)
    assert isinstance(data, ChildV1)
    await service.apply_child(conn, data)


CHILD_HANDLERS: dict[str, Handler] = dict.fromkeys(REGISTRY_EVENTS, child_changed)
