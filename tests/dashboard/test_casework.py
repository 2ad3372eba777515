"""The casework pages' pure helpers: Cambodia's date, the user's own worker record, the
tab a query asks for, and the visit form's body."""

from __future__ import annotations

import datetime as dt

from dashboard.i18n import translator
from dashboard.pages.casework import (
    WorkerCache,
    due_by_child,
    is_me,
    pick_tab,
    visit_body,
)
from libs.common import clock

t = translator("en")
TODAY = dt.date(2026, 12, 3)


def test_cambodia_today_is_utc_plus_seven() -> None:
    late = dt.datetime(2026, 12, 3, 17, 30, tzinfo=dt.UTC)
    assert clock.today(late) == dt.date(2026, 12, 4)
    early = dt.datetime(2026, 12, 3, 16, 59, tzinfo=dt.UTC)
    assert clock.today(early) == dt.date(2026, 12, 3)


def test_is_me_needs_the_username_and_the_organisation() -> None:
    worker = {"username": "srey.worker", "org": "ngo-care"}
    assert is_me(worker, "Srey.Worker", "ngo-care")
    assert not is_me(worker, "srey.worker", "another-ngo")
    assert not is_me(worker, "someone", "ngo-care")
    assert not is_me({"username": None, "org": "ngo-care"}, "", "ngo-care")


def test_pick_tab() -> None:
    assert pick_tab({"due": "overdue"}, True, True) == "overdue"
    assert pick_tab({"due": "upcoming"}, False, True) == "upcoming"
    assert pick_tab({}, True, True) == "caseload"
    assert pick_tab({}, False, True) == "overdue"
    assert pick_tab({"tab": "caseload"}, False, True) == "overdue"
    assert pick_tab({"tab": "workers"}, False, True) == "workers"
    assert pick_tab({"tab": "workers"}, False, False) == "overdue"
    assert pick_tab({"due": "<script>"}, False, True) == "overdue"


def test_due_by_child() -> None:
    items = [{"child_id": "a", "overdue": True}, {"child_id": "b", "overdue": False}]
    assert due_by_child(items)["a"]["overdue"] is True
    assert set(due_by_child(items)) == {"a", "b"}


def test_visit_body() -> None:
    body, errors = visit_body(
        {
            "child_id": "c1",
            "date": "2026-12-01",
            "kind": "home_visit",
            "outcome": "met",
            "notes": " All well \n",
            "next_visit_on": "2026-12-20",
        },
        t,
        TODAY,
    )
    assert errors == []
    assert body == {
        "child_id": "c1",
        "date": "2026-12-01",
        "kind": "home_visit",
        "outcome": "met",
        "notes": "All well",
        "next_visit_on": "2026-12-20",
    }
    body, errors = visit_body(
        {"child_id": "c1", "date": "2026-12-01", "kind": "home_visit", "outcome": "met"}, t, TODAY
    )
    assert errors == []
    assert "notes" not in body
    assert "next_visit_on" not in body


def test_visit_body_names_what_is_wrong() -> None:
    _, errors = visit_body(
        {"date": "1/12/2026", "kind": "party", "outcome": "", "next_visit_on": "soon"}, t, TODAY
    )
    assert {e["field"] for e in errors} == {"date", "kind", "outcome", "next_visit_on"}
    _, errors = visit_body(
        {"date": "2026-12-01", "kind": "follow_up", "outcome": "met", "notes": "x" * 4001}, t, TODAY
    )
    assert [e["field"] for e in errors] == ["notes"]


def test_a_visit_is_not_to_come_and_the_next_comes_after_it() -> None:
    visit = {"kind": "follow_up", "outcome": "met"}
    _, errors = visit_body({**visit, "date": "2026-12-04"}, t, TODAY)
    assert [e["field"] for e in errors] == ["date"]
    _, errors = visit_body({**visit, "date": "2026-12-03"}, t, TODAY)
    assert errors == []
    for next_on in ("2026-12-03", "2026-11-01"):
        _, errors = visit_body({**visit, "date": "2026-12-03", "next_visit_on": next_on}, t, TODAY)
        assert [e["field"] for e in errors] == ["next_visit_on"]


def test_worker_cache_keeps_a_while_and_is_bounded() -> None:
    cache = WorkerCache(size=2, ttl_s=60)
    assert cache.get("a") == (False, None)
    cache.put("a", None)
    assert cache.get("a") == (True, None)
    cache.put("b", {"id": "w"})
    cache.put("c", {"id": "x"})
    assert cache.get("a") == (False, None)
    assert cache.get("c") == (True, {"id": "x"})
    stale = WorkerCache(size=2, ttl_s=-1)
    stale.put("a", {"id": "w"})
    assert stale.get("a") == (False, None)
