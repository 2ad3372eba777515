"""Response models of the indicators API (it takes no bodies: every input is a query)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ValueRow(BaseModel):
    """One value: suppressed values are null with suppressed true."""

    indicator: str
    period: str
    area: str
    disaggregation: str
    value: int | None
    suppressed: bool


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
