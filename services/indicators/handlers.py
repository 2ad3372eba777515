"""Events the indicators service consumes: every event of REGISTRY, REFERRALS, FUNDS and
CASEWORK."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import CloudEvent
from libs.common.events.base import EventData
from libs.common.events.casework_events import CASEWORK_EVENTS
from libs.common.events.catalog import REGISTRY_EVENTS
from libs.common.events.consumer import Handlers, handle
from libs.common.events.funds_events import FUNDS_EVENTS
from libs.common.events.referrals_events import REFERRALS_EVENTS
from services.indicators import jetstream, service


async def event_applied(conn: AsyncConnection, event: CloudEvent, data: EventData) -> None:
    """Apply any catalogued event, its data checked, to the answering generation (most
    change no aggregate)."""
    await service.apply_live(conn, [event])


async def events_applied(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, EventData]]
) -> None:
    """Apply a batch of checked events, in stream order, as a rebuild does: once per batch
    the generation, the inbox, the versions and the cells."""
    await service.apply_live(conn, [event for event, _ in events])


# stream -> (durable, subject, handlers)
STREAM_HANDLERS: dict[str, tuple[str, str, Handlers]] = {
    stream: (durable, subject, handle(types, EventData, event_applied, batch=events_applied))
    for stream, (durable, subject), types in (
        ("REGISTRY", jetstream.CONSUMERS["REGISTRY"], REGISTRY_EVENTS),
        ("REFERRALS", jetstream.CONSUMERS["REFERRALS"], REFERRALS_EVENTS),
        ("FUNDS", jetstream.CONSUMERS["FUNDS"], FUNDS_EVENTS),
        ("CASEWORK", jetstream.CONSUMERS["CASEWORK"], CASEWORK_EVENTS),
    )
}
