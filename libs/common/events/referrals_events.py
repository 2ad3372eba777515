"""Events the referrals service publishes (SPEC §8): ids, codes, amounts and states only."""

from __future__ import annotations

from libs.common.events.catalog import EventData

REFERRALS_EVENTS: dict[str, type[EventData]] = {}
