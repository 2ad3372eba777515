"""The casework rules of the indicators, alone (no I/O): follow-ups due, overdue flags,
caseloads, assignments, workers' activity and training, distinct counts, event parsing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from libs.common.events.casework_events import AssignmentV1, VisitV1
from services.indicators import casework, effects
from services.indicators.dates import add_months, last_day, month_code, month_index, stock_day
from services.indicators.stocks import ChildState, state_at, stock_contributions
from tests.indicators.conftest import event, uuid_of

T = datetime(2026, 5, 1, tzinfo=UTC)


def test_calendar_months_and_stock_days() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 5, 10), 12) == date(2027, 5, 10)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert last_day(month_index(2026, 2)) == date(2026, 2, 28)
    assert stock_day(month_index(2026, 6), date(2026, 12, 3)) == date(2026, 6, 30)
    assert stock_day(month_index(2026, 12), date(2026, 12, 3)) == date(2026, 12, 3)


def test_followed_needs_the_first_and_every_due_follow_up() -> None:
    moved = date(2026, 5, 10)
    assert not casework.followed(moved, [], date(2026, 5, 31))  # none made yet
    assert not casework.followed(moved, [], date(2026, 6, 30))
    assert casework.followed(moved, [1], date(2026, 6, 30))
    assert casework.followed(moved, [1], date(2026, 6, 9))  # made early
    assert not casework.followed(moved, [1], date(2026, 8, 10))  # +3 due, not made
    assert casework.followed(moved, [1, 3], date(2026, 11, 9))
    assert not casework.followed(moved, [1, 3], date(2026, 11, 10))  # +6 due
    assert casework.followed(moved, [1, 3, 6, 12], date(2030, 1, 1))
    r = casework.Reintegration("e1", "c", moved)
    late = casework.Followup("v1", "c", date(2026, 7, 1), (1,))
    before = casework.Followup("v0", "c", date(2026, 5, 1), (1,))  # before the move
    assert casework.followed_children([r], [late], date(2026, 6, 30)) == set()
    assert casework.followed_children([r], [late], date(2026, 7, 31)) == {"c"}
    assert casework.followed_children([r], [before], date(2026, 6, 30)) == set()


def test_overdue_caseload_and_assignments_at_a_day() -> None:
    flag = casework.VisitFlag("e1", "c", date(2026, 5, 20), T, True)
    cleared = casework.VisitFlag("e2", "c", date(2026, 6, 25), T, False)
    assert casework.overdue_children([cleared, flag], date(2026, 5, 31)) == {"c"}
    assert casework.overdue_children([cleared, flag], date(2026, 6, 30)) == set()
    up = casework.CaseloadChange("e1", "w", date(2026, 5, 3), T, 3, 2)
    down = casework.CaseloadChange("e2", "w", date(2026, 6, 10), T, 2, 2)
    assert casework.over_caseload([down, up], date(2026, 5, 31)) == {"w"}
    assert casework.over_caseload([down, up], date(2026, 6, 30)) == set()
    a = casework.Assignment("a", "c", "w", date(2026, 4, 5), date(2026, 6, 10))
    assert casework.assigned_children([a], date(2026, 4, 4)) == set()
    assert casework.assigned_children([a], date(2026, 6, 9)) == {"c"}
    assert casework.assigned_children([a], date(2026, 6, 10)) == set()


def test_workers_active_trained_and_counted_once_per_place() -> None:
    day = date(2026, 5, 31)
    w1 = casework.WorkerVersion(
        "w1", 1, 0, "active", "ngo_case_worker", ("1202",), ((date(2026, 4, 1), day),), day
    )
    w2 = casework.WorkerVersion(
        "w2",
        1,
        0,
        "active",
        "ngo_case_worker",
        ("120201", "120101"),
        ((date(2025, 1, 1), None),),
        None,
    )
    gone = casework.WorkerVersion(
        "w3", 1, 0, "inactive", "ngo_case_worker", ("KH",), ((date(2025, 1, 1), None),), None
    )
    assert w1.is_active(day)
    assert w1.is_trained(day)
    assert not w1.is_active(date(2026, 6, 1))
    assert w2.is_active(day)
    assert not w2.is_trained(day)
    counts = casework.worker_counts([w1, w2, gone], {"w2"}, ["120201", "1202", "12", "KH"], day)
    assert {p: c["ngo_case_worker"] for p, c in counts["CP_WORKERS_ACTIVE"].items()} == {
        "120201": 2,
        "1202": 2,
        "12": 2,
        "KH": 2,
    }
    assert counts["CP_WORKERS_TRAINED"]["12"]["ngo_case_worker"] == 1
    assert counts["CP_CASELOAD_OVER"]["1202"]["ngo_case_worker"] == 1


def test_residential_care_is_a_stock_of_open_cases() -> None:
    state = ChildState(
        "120101", "F", month_index(2016, 3), "open", "low", (), "residential_institution"
    )
    assert ("CP_CHILD_RESIDENTIAL", "F_Y10_14") in stock_contributions(state, month_index(2026, 5))
    closed = ChildState(
        "120101", "F", month_index(2016, 3), "closed", "low", (), "residential_institution"
    )
    assert stock_contributions(closed, month_index(2026, 5)) == []
    family = ChildState("120101", "F", month_index(2016, 3), "open", "low", ())
    assert all(i != "CP_CHILD_RESIDENTIAL" for i, _ in stock_contributions(family, 0))


def test_casework_events_as_effects() -> None:
    data = AssignmentV1(
        assignment_id=uuid_of("a"),
        child_id=uuid_of("c"),
        worker_id=uuid_of("w"),
        commune_code="120101",
        org="moswvy",
        status="ended",
        started_on="2026-04-05",
        ended_on="2026-06-10",
        caseload=2,
        max_caseload=2,
        override=False,
    )
    ended = effects.effects_of(
        event(
            "casework", "casework.assignment.ended.v1", uuid_of("a"), data, "2026-06-10T04:00:00Z"
        )
    )
    assert ended.assignment is not None
    assert ended.assignment.ended_on == date(2026, 6, 10)
    assert ended.caseload is not None
    assert ended.caseload.on == date(2026, 6, 10)
    visit = VisitV1(
        visit_id=uuid_of("v"),
        child_id=uuid_of("c"),
        worker_id=None,
        commune_code="120101",
        date="2026-04-30",
        kind="follow_up",
        outcome="met",
        next_visit_on=None,
        followups_made=[1, 7],
    )
    made = effects.effects_of(
        event("casework", "casework.visit.recorded.v1", uuid_of("v"), visit, "2026-05-02T03:00:00Z")
    )
    assert [(f.indicator, f.month, f.combo) for f in made.flows] == [
        ("CP_VISITS", month_index(2026, 4), "follow_up")
    ]
    assert made.followup is not None
    assert made.followup.months == (1,)


def test_casework_deltas_add_up_to_the_final_state_in_any_order() -> None:
    """Facts and versions of a child applied one at a time, in any order, change the cells
    by exactly the final state's contributions (what a month's materialisation counts)."""
    import random

    from services.indicators.stocks import ChildVersion

    child = "c"
    born = month_index(2016, 3)
    v1 = ChildVersion(
        child, 1, month_index(2026, 3), ChildState("120101", "F", born, "open", "low", ())
    )
    v2 = ChildVersion(
        child, 2, month_index(2026, 5), ChildState("120201", "F", born, "open", "low", ())
    )
    v3 = ChildVersion(
        child, 3, month_index(2026, 7), ChildState("120201", "F", born, "closed", "low", ())
    )
    facts: list[object] = [
        v1,
        v2,
        v3,
        casework.Assignment("a1", child, "w", date(2026, 4, 5), date(2026, 6, 10)),
        casework.Assignment("a2", child, "w", date(2026, 6, 10), None),
        casework.VisitFlag("f1", child, date(2026, 4, 20), T, True),
        casework.VisitFlag("f2", child, date(2026, 5, 3), T, False),
        casework.Reintegration("r1", child, date(2026, 4, 15)),
        casework.Followup("v1", child, date(2026, 5, 20), (1,)),
    ]
    through = month_index(2026, 9)

    def split(items: list[object]) -> tuple[list[ChildVersion], casework.ChildCasework]:
        known = casework.no_casework()
        versions = [i for i in items if isinstance(i, ChildVersion)]
        known.assignments = [i for i in items if isinstance(i, casework.Assignment)]
        known.flags = [i for i in items if isinstance(i, casework.VisitFlag)]
        known.reintegrations = [i for i in items if isinstance(i, casework.Reintegration)]
        known.followups = [i for i in items if isinstance(i, casework.Followup)]
        return versions, known

    final = split(facts)
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for month in range(month_index(2026, 1), through + 1):
        state = state_at(final[0], month)
        for ind, commune, combo in casework.contributions(
            child, state.state if state else None, final[1], month
        ):
            expected[(ind, month_code(month), commune, combo)] += 1
    assert expected  # the scenario counts somewhere
    rng = random.Random(3)
    for _ in range(20):
        order = rng.sample(facts, len(facts))
        total: Counter[tuple[str, str, str, str]] = Counter()
        for n in range(1, len(order) + 1):
            added = order[n - 1]
            start = (
                added.effective
                if isinstance(added, ChildVersion)
                else split([added])[1].months()[0]
            )
            total.update(
                casework.casework_deltas(
                    child, split(order[: n - 1]), split(order[:n]), start, through
                )
            )
        assert +total == expected
