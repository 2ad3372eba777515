"""Events the funds service publishes (SPEC §8): ids, codes, amounts and states only."""

from __future__ import annotations

from libs.common.events.catalog import EventData

FUNDS_EVENTS: dict[str, type[EventData]] = {}
