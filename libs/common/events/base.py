"""The base of every event's data model: closed, frozen, and nothing service-specific."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    """Base of every event's data: closed, so a stray field (a name, say) cannot slip in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
