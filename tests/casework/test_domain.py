"""The casework rules alone: calendar months, follow-up windows, eligibility."""

from __future__ import annotations

from datetime import date

import pytest

from libs.common.errors import Conflict
from services.casework import domain


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 1, 31), 3, date(2026, 4, 30)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
        (date(2026, 11, 15), 12, date(2027, 11, 15)),
        (date(2026, 12, 1), 1, date(2027, 1, 1)),
    ],
)
def test_calendar_months(start: date, months: int, expected: date) -> None:
    assert domain.add_months(start, months) == expected


def test_followup_windows_open_when_the_one_before_is_due() -> None:
    schedule = domain.followup_schedule(date(2026, 1, 31))
    assert schedule == [
        (1, date(2026, 1, 31), date(2026, 2, 28)),
        (3, date(2026, 2, 28), date(2026, 4, 30)),
        (6, date(2026, 4, 30), date(2026, 7, 31)),
        (12, date(2026, 7, 31), date(2027, 1, 31)),
    ]


def _followups(moved: date, made: set[int] = frozenset()) -> list[dict]:  # type: ignore[assignment]
    return [
        {
            "id": m,
            "month": m,
            "reintegrated_on": moved,
            "opens_on": o,
            "due_on": d,
            "made_on": moved if m in made else None,
        }
        for m, o, d in domain.followup_schedule(moved)
    ]


def test_a_met_visit_makes_the_earliest_open_followup() -> None:
    moved = date(2026, 1, 10)
    fs = _followups(moved)
    assert domain.followup_made_by(fs, date(2026, 1, 20), "met", moved)["month"] == 1
    assert domain.followup_made_by(fs, date(2026, 1, 9), "met", moved) is None
    assert domain.followup_made_by(fs, date(2026, 1, 20), "not_home", moved) is None
    made_first = _followups(moved, {1})
    # The 3-month window opens at the 1-month due date (2026-02-10).
    assert domain.followup_made_by(made_first, date(2026, 2, 9), "met", moved) is None
    assert domain.followup_made_by(made_first, date(2026, 2, 10), "met", moved)["month"] == 3
    # A late first follow-up is made before a later one.
    assert domain.followup_made_by(fs, date(2026, 5, 1), "met", moved)["month"] == 1


def test_eligibility_names_the_rule() -> None:
    day = date(2026, 6, 1)
    worker = {
        "status": "active",
        "areas": ["1201"],
        "caseload": 0,
        "max_caseload": 1,
        "contracts": [
            {"org": "x", "start_on": "2026-01-01", "end_on": "2026-05-31", "monthly_fee_khr": 1}
        ],
        "trainings": [{"course": "child_protection_basics", "completed_on": "2025-01-01"}],
    }
    child = {"status": "open", "commune_code": "120101", "village_code": None}
    problem = domain.assignment_problem(worker, child, day)
    assert isinstance(problem, Conflict)
    assert problem.extra["rule"] == domain.RULE_CONTRACT
    worker["contracts"][0]["end_on"] = None
    assert domain.assignment_problem(worker, child, day) is None
    worker["trainings"] = [{"course": "case_management", "completed_on": "2025-01-01"}]
    problem = domain.assignment_problem(worker, child, day)
    assert problem is not None
    assert problem.extra["rule"] == domain.RULE_TRAINING
    worker["trainings"] = [{"course": "child_protection_basics", "completed_on": "2025-01-01"}]
    problem = domain.assignment_problem(worker, {**child, "commune_code": "010201"}, day)
    assert problem is not None
    assert problem.extra["rule"] == domain.RULE_AREA
    worker["caseload"] = 1
    with pytest.raises(Conflict):
        domain.caseload_override(worker, None)
    assert domain.caseload_override(worker, "an emergency placement") is True
