"""The caller of a use case: who acts, in which request, and the events its unit of work
will emit. Every service's routes build one per request and hand it to the use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.events.envelope import CloudEvent, new_event
from libs.common.events.outbox import write_events


@dataclass
class Context:
    """One request's caller of a use case in `service` (the source of the events it emits)."""

    service: str
    principal: Principal
    request_id: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    events: list[CloudEvent] = field(default_factory=list)

    @property
    def actor(self) -> dict[str, str]:
        """Who acts, as the columns that record it."""
        return {"actor_sub": self.principal.sub, "actor_org": self.principal.org}

    def event(self, type_: str, subject: str, data: BaseModel) -> CloudEvent:
        """An event of this request (`new_event` checks `data` against the catalogue)."""
        return new_event(self.service, type_, subject, data, self.request_id)

    def emit(self, type_: str, subject: str, data: BaseModel) -> None:
        """Add an event to those the unit of work writes."""
        self.events.append(self.event(type_, subject, data))

    async def write_events(self, conn: AsyncConnection, outbox: Table) -> None:
        """Write the pending events to the outbox, in this transaction."""
        await write_events(conn, outbox, self.events)
        self.events.clear()
