"""Response models of the indicators API (it takes no bodies: every input is a query)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ValueRow(BaseModel):
    """One value: exact, or rounded to base 5 for a principal without detail."""

    indicator: str
    period: str
    area: str
    disaggregation: str
    value: int
    suppressed: bool = Field(
        description="Always false: nothing is withheld (kept for existing clients)."
    )
    rounded: bool = Field(
        description="The value is a sum of base cells rounded to base 5 (the catalogue's "
        "small-cell rule); false for exact values."
    )


class ValuesOut(BaseModel):
    indicator: str
    period: str
    area: str
    level: Literal["province", "district", "commune"] | None
    items: list[ValueRow]


class StreamStatus(BaseModel):
    stream: str
    consumer: str
    last_applied_sequence: int | None = None
    last_sequence: int | None = None
    lag: int | None = None
    oldest_unapplied_age_seconds: float | None = None
    exists: bool = True


class StatusOut(BaseModel):
    broker: bool
    streams: list[StreamStatus]
    generation: int
    stocks_through: str | None
    rebuild: dict[str, Any] | None


class RebuildOut(BaseModel):
    state: Literal["started", "done"]
    generation: int | None = None
    previous_generation: int | None = None
    events: int | None = None
    seconds: float | None = None
