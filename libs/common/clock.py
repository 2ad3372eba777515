"""Cambodia's clock: the one time zone every day and month of the platform is counted in
(UTC+7; Cambodia keeps no daylight saving): a registration's day and the age rule on it, a
visit's day, a referral's or an unmet need's month, an indicator's period."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

CAMBODIA = timezone(timedelta(hours=7))


def today(now: datetime | None = None) -> date:
    """The day in Cambodia at `now` (an aware time; by default now)."""
    return (now or datetime.now(UTC)).astimezone(CAMBODIA).date()
