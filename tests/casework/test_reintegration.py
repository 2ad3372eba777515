"""Reintegration: a child moved from a residential institution into a family gets
follow-ups 1, 3, 6 and 12 calendar months after the move; met visits make them in order
as their windows open; a later move gets a fresh set.

The registry's events are published as the registry publishes them (`updated` and
`reintegrated` of the same change)."""

from __future__ import annotations

import functools
import operator
from datetime import date

from tests.casework.conftest import (
    GOV_ORG,
    World,
    casework_events,
    projected,
    publish,
    reintegration,
    until,
)


async def _move(world: World, child: str, on: date, version: int) -> None:
    await publish(
        world.js,
        reintegration(
            on,
            child_id=child,
            commune=world.place.commune,
            village=world.place.village,
            owner_org=GOV_ORG,
            version=version,
        ),
    )
    await projected(world.db, child, version)

    async def moved() -> bool:
        return (await world.case(child))["reintegrated_on"] == on.isoformat()

    await until(moved, what="the reintegration")


async def test_followups_of_a_reintegrated_child(world: World) -> None:
    child = await world.child(care_setting="residential_institution")
    assert (await world.case(child))["care_setting"] == "residential_institution"
    moved = date(2025, 11, 30)
    await _move(world, child, moved, 2)
    case = await world.case(child)
    assert case["care_setting"] == "family"
    assert [(f["month"], f["opens_on"], f["due_on"], f["made_on"]) for f in case["followups"]] == [
        (1, "2025-11-30", "2025-12-30", None),
        (3, "2025-12-30", "2026-02-28", None),
        (6, "2026-02-28", "2026-05-30", None),
        (12, "2026-05-30", "2026-11-30", None),
    ]
    # Before the move, or not met: nothing made.
    r = await world.visit(child, on=date(2025, 11, 29))
    assert r.json()["followups_made"] == []
    r = await world.visit(child, on=date(2025, 12, 5), outcome="not_home")
    assert r.json()["followups_made"] == []
    first = (await world.visit(child, on=date(2025, 12, 10))).json()
    assert first["followups_made"] == [1]
    # The 3-month window is not open before 2025-12-30.
    r = await world.visit(child, on=date(2025, 12, 20))
    assert r.json()["followups_made"] == []
    r = await world.visit(child, on=date(2026, 1, 10))
    assert r.json()["followups_made"] == [3]
    case = await world.case(child)
    assert [(f["month"], f["made_on"]) for f in case["followups"]] == [
        (1, "2025-12-10"),
        (3, "2026-01-10"),
        (6, None),
        (12, None),
    ]
    assert case["followups"][0]["visit_id"] == first["id"]

    async def made() -> list[list[int]]:
        found = [
            e["data"]["followups_made"]
            for e in await casework_events(world.nats_url, "casework.visit.recorded.v1")
            if e["data"]["child_id"] == child
        ]
        return found if len(found) == 5 else []

    assert sorted(functools.reduce(operator.iadd, await until(made), [])) == [1, 3]

    # Back to an institution and out again: a fresh set from the new move.
    again = date(2026, 10, 1)
    await _move(world, child, again, 3)
    case = await world.case(child)
    assert [(f["month"], f["due_on"], f["made_on"]) for f in case["followups"]] == [
        (1, "2026-11-01", None),
        (3, "2027-01-01", None),
        (6, "2027-04-01", None),
        (12, "2027-10-01", None),
    ]
    r = await world.visit(child, on=date(2026, 10, 2))
    assert r.json()["followups_made"] == [1]


async def test_a_redelivered_reintegration_adds_nothing(world: World) -> None:
    child = await world.child(care_setting="residential_institution")
    moved = date(2026, 6, 15)
    await _move(world, child, moved, 2)
    # The same change published again (new event ids): still one set of four.
    await publish(
        world.js,
        reintegration(
            moved,
            child_id=child,
            commune=world.place.commune,
            village=world.place.village,
            owner_org=GOV_ORG,
            version=2,
        ),
    )
    other = await world.child()  # published after: once projected, the above was applied
    assert other
    assert len((await world.case(child))["followups"]) == 4
