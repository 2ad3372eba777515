"""The registry's pure rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from libs.common import clock
from libs.common.errors import Conflict, Unprocessable
from services.registry import domain


def test_cambodia_date_is_utc_plus_seven() -> None:
    assert clock.today(datetime(2026, 3, 31, 17, 30, tzinfo=UTC)) == date(2026, 4, 1)
    assert clock.today(datetime(2026, 3, 31, 16, 59, tzinfo=UTC)) == date(2026, 3, 31)


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(2010, 5, 1), date(2026, 4, 30), 15),
        (date(2010, 5, 1), date(2026, 5, 1), 16),
        (date(2012, 2, 29), date(2026, 2, 28), 13),
        (date(2012, 2, 29), date(2026, 3, 1), 14),
    ],
)
def test_age_on(birth: date, on: date, age: int) -> None:
    assert domain.age_on(birth, on) == age


def test_registrable_ages() -> None:
    domain.check_registrable(date(2008, 11, 27), date(2026, 11, 26))  # 17, a day short of 18
    with pytest.raises(Unprocessable):
        domain.check_registrable(date(2008, 11, 26), date(2026, 11, 26))  # 18 today
    with pytest.raises(Unprocessable):
        domain.check_registrable(date(2026, 11, 27), date(2026, 11, 26))  # not yet born


def test_names_match_across_case_spacing_and_invisible_marks() -> None:
    assert domain.normalize_name("  SOKHA\u200b  Chan ") == "sokha chan"
    # Khmer written with a zero-width space between words, as keyboards often do
    assert domain.normalize_name("សុខា\u200bចាន់") == domain.normalize_name("សុខាចាន់")
    assert "chan sokha" in domain.name_search("Sokha", "Chan")
    assert domain.like_pattern("50%_off") == "%50\\%\\_off%"


def test_changes_lists_only_differing_fields() -> None:
    old = {"risk_level": "low", "vulnerabilities": ["a"], "birth_date": date(2015, 1, 1)}
    new = {"risk_level": "high", "vulnerabilities": ["a"], "birth_date": date(2015, 1, 2)}
    assert domain.changes(old, new) == {
        "risk_level": {"old": "low", "new": "high"},
        "birth_date": {"old": "2015-01-01", "new": "2015-01-02"},
    }


def _child(**kw: object) -> dict:
    base = {
        "sex": "female",
        "commune_code": "120101",
        "village_code": "12010101",
        "birth_date": date(2015, 4, 12),
        "given_name": "Sokha",
        "family_name": "Chan",
    }
    child = {**base, **kw}
    child["name_search"] = domain.name_search(child["given_name"], child["family_name"])
    return child


def test_duplicate_score() -> None:
    same, _ = domain.duplicate_score(_child(), _child())
    assert same == 1.0
    swapped, _ = domain.duplicate_score(_child(), _child(given_name="Chan", family_name="Sokha"))
    assert swapped == 1.0
    near, reasons = domain.duplicate_score(
        _child(), _child(given_name="Sokhar", birth_date=date(2015, 5, 1))
    )
    assert near >= domain.DUPLICATE_THRESHOLD
    assert "birth dates within a month" in reasons
    assert domain.duplicate_score(_child(), _child(sex="male"))[0] == 0
    assert domain.duplicate_score(_child(), _child(commune_code="120109"))[0] == 0
    assert domain.duplicate_score(_child(), _child(birth_date=date(2017, 1, 1)))[0] == 0
    assert domain.duplicate_score(_child(), _child(given_name="Vibol", family_name="Meas"))[0] == 0


def test_case_states() -> None:
    assert domain.close("open") == "closed"
    assert domain.reopen("closed") == "open"
    with pytest.raises(Conflict):
        domain.close("closed")
    with pytest.raises(Conflict):
        domain.reopen("open")


def test_event_data_carries_no_names() -> None:
    import uuid

    child = {
        **_child(),
        "id": uuid.uuid4(),
        "case_number": "120101-0000001",
        "vulnerabilities": ["neglect"],
        "risk_level": "high",
        "care_setting": "family",
        "status": "open",
        "owner_org": "ngo",
        "consent": {"data_sharing": False},
        "version": 1,
        "registered_on": date(2026, 1, 1),
    }
    data = domain.event_data(child).model_dump()
    assert data["birth_month"] == "2015-04"
    assert "given_name" not in data
    assert "Sokha" not in str(data)
