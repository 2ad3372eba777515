"""The indicators' rules on their own: periods, age bands, stock deltas, rounding."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.indicators import catalogue, dates, effects, geography, rounding, stocks
from services.indicators.dates import Period, month_index
from services.indicators.dhis2 import timestamp
from services.indicators.stocks import ChildState, ChildVersion


def test_periods_parse_in_dhis2_syntax() -> None:
    march = Period.parse("202603")
    assert (march.first, march.last, march.adx) == (
        month_index(2026, 3),
        month_index(2026, 3),
        "2026-03-01/P1M",
    )
    q1 = Period.parse("2026Q1")
    assert (q1.start_date, q1.end_date, q1.adx) == (
        date(2026, 1, 1),
        date(2026, 3, 31),
        "2026-01-01/P3M",
    )
    year = Period.parse("2024")
    assert (year.end_date, year.adx, len(year.months)) == (date(2024, 12, 31), "2024-01-01/P1Y", 12)
    for bad in ("202613", "2026Q5", "26", "2026-03", "2026W1", "202600"):
        with pytest.raises(ValueError, match=r"."):
            Period.parse(bad)


def test_periods_between_keep_only_whole_periods() -> None:
    got = dates.periods_between(date(2026, 1, 15), date(2026, 7, 31), dates.PeriodType.monthly)
    assert [p.code for p in got] == ["202602", "202603", "202604", "202605", "202606", "202607"]
    got = dates.periods_between(date(2026, 1, 1), date(2026, 9, 30), dates.PeriodType.quarterly)
    assert [p.code for p in got] == ["2026Q1", "2026Q2", "2026Q3"]


def test_months_are_counted_in_cambodia_time() -> None:
    assert dates.cambodia_month(datetime(2025, 3, 31, 16, 59, tzinfo=UTC)) == month_index(2025, 3)
    assert dates.cambodia_month(datetime(2025, 3, 31, 17, 0, tzinfo=UTC)) == month_index(2025, 4)


@pytest.mark.parametrize(
    ("birth", "end", "band"),
    [
        ((2020, 6), (2025, 5), "Y0_4"),  # 4 until the birthday month
        ((2020, 6), (2025, 6), "Y5_9"),  # birthday in June: 5 by June's last day
        ((2010, 3), (2025, 2), "Y10_14"),
        ((2010, 3), (2025, 3), "Y15_17"),
        ((2007, 1), (2025, 12), "Y15_17"),  # 18: still an open case, oldest band
        ((2025, 5), (2025, 5), "Y0_4"),
    ],
)
def test_age_band_at_the_last_day_of_the_month(
    birth: tuple[int, int], end: tuple[int, int], band: str
) -> None:
    assert stocks.age_band(month_index(*birth), month_index(*end)) == band


def test_age_band_is_exactly_the_calendar_rule() -> None:
    for by, bm, ey, em in itertools.product(range(2000, 2004), range(1, 13), [2010], range(1, 13)):
        age = ey - by - (1 if em < bm else 0)
        expected = "Y0_4" if age < 5 else "Y5_9" if age < 10 else "Y10_14" if age < 15 else "Y15_17"
        assert stocks.age_band(month_index(by, bm), month_index(ey, em)) == expected


def test_a_flow_is_banded_at_each_periods_end() -> None:
    flow = effects.Flow(
        "CP_CHILD_REG", month_index(2025, 2), "120101", None, 1, "F", month_index(2020, 6)
    )
    assert flow.cells() == Counter(
        {
            ("CP_CHILD_REG", "202502", "120101", "F_Y0_4"): 1,
            ("CP_CHILD_REG", "2025Q1", "120101", "F_Y0_4"): 1,
            ("CP_CHILD_REG", "2025", "120101", "F_Y5_9"): 1,
        }
    )


def _state(**kw: object) -> ChildState:
    base: dict[str, object] = {
        "commune": "120101",
        "sex": "F",
        "birth_month": month_index(2015, 1),
        "status": "open",
        "risk": "low",
        "vulnerabilities": (),
    }
    base.update(kw)
    return ChildState(**base)  # type: ignore[arg-type]


def _replay(versions: list[ChildVersion], through: int) -> Counter[catalogue.CellKey]:
    total: Counter[catalogue.CellKey] = Counter()
    known: list[ChildVersion] = []
    for v in versions:
        total.update(stocks.stock_deltas(known, v, through))
        known.append(v)
    return Counter({k: n for k, n in total.items() if n})


def test_an_unmatched_referral_counts_in_the_month_it_was_asked_at_the_childs_commune() -> None:
    from tests.indicators.conftest import unmatched_event, uuid_of

    def flows(**kw: str) -> list[tuple[str, int, str, str | None]]:
        e = unmatched_event(uuid_of("child"), commune="120101", service_type="shelter", **kw)
        return [(f.indicator, f.month, f.commune, f.combo) for f in effects.effects_of(e).flows]

    # 00:30 on 1 March in Cambodia, whenever the event was published
    assert flows(occurred_at="2025-02-28T17:30:00Z", when="2025-02-28T16:00:00Z") == [
        ("CP_REF_UNMATCHED", month_index(2025, 3), "120101", "shelter")
    ]
    assert flows(occurred_at="2025-02-28T16:59:59+00:00") == [
        ("CP_REF_UNMATCHED", month_index(2025, 2), "120101", "shelter")
    ]
    with pytest.raises(effects.InvalidEvent):
        flows(occurred_at="last tuesday", when="2025-02-28T16:00:00Z")
    bad_place = unmatched_event(
        uuid_of("child"), commune="999999", service_type="shelter", occurred_at="2025-02-01"
    )
    with pytest.raises(effects.InvalidEvent):
        effects.effects_of(bad_place)
    assert catalogue.BY_CODE["CP_REF_UNMATCHED"].combo is catalogue.BY_SERVICE_TYPE
    assert "CP_REF_UNMATCHED" in catalogue.ROUNDED


def test_stock_deltas_do_not_depend_on_arrival_order() -> None:
    jan, mar, jun, dec = (month_index(2025, m) for m in (1, 3, 6, 12))
    versions = [
        ChildVersion("c", 1, jan, _state(vulnerabilities=("violence",))),
        ChildVersion("c", 2, mar, _state(status="closed")),
        ChildVersion("c", 3, jun, _state(risk="high", commune="120109")),
    ]
    expected = _replay(versions, dec)
    for order in itertools.permutations(versions):
        assert _replay(list(order), dec) == expected
    assert expected[("CP_CASE_OPEN", "202502", "120101", "F_Y10_14")] == 1
    assert ("CP_CASE_OPEN", "202503", "120101", "F_Y10_14") not in expected
    assert expected[("CP_CASE_HIGH_RISK", "202512", "120109", "F_Y10_14")] == 1


KEY = bytes(range(32))


def test_rounding_is_consistent_unbiased_and_keeps_zero_and_fives() -> None:
    cells = [
        ("CP_CHILD_REG", "202503", f"12{d:02d}{c:02d}", "F_Y0_4")
        for d in range(1, 40)
        for c in range(1, 40)
    ]
    for cell in cells[:50]:
        assert rounding.round_count(KEY, cell, 0) == 0
        assert rounding.round_count(KEY, cell, 10) == 10
        for v in range(1, 30):
            r = rounding.round_count(KEY, cell, v)
            assert r % 5 == 0
            assert abs(r - v) < 5
            assert rounding.round_count(KEY, cell, v) == r  # the same cell, the same way
    for rest in (1, 2, 3, 4):
        up = sum(rounding.round_count(KEY, cell, 5 + rest) == 10 for cell in cells) / len(cells)
        assert abs(up - rest / 5) < 0.04, (rest, up)  # P(up) = (v mod 5)/5: unbiased
    other = bytes(32)
    assert [rounding.round_count(other, c, 2) for c in cells[:40]] != [
        rounding.round_count(KEY, c, 2) for c in cells[:40]
    ]  # another key, other draws


def test_riel_follow_their_rounded_grant_count() -> None:
    cell = ("CP_GRANT_DISBURSED_KHR", "202503", "120101", "medical_transport")
    count_cell = ("CP_GRANT_DISBURSED", *cell[1:])
    for count in range(1, 12):
        r = rounding.round_count(KEY, count_cell, count)
        amount = 150_000 * count
        assert rounding.published_value(KEY, cell, amount, count) == 150_000 * r
    assert rounding.published_value(KEY, cell, 0, 0) == 0
    providers = ("CP_PROVIDERS", "202503", "120101", "health")
    assert rounding.published_value(KEY, providers, 3) == 3  # not about a child: exact


def test_published_tables_are_sums_of_rounded_base_cells() -> None:
    rng = random.Random(3)
    reg = catalogue.BY_CODE["CP_CHILD_REG"]
    open_ = catalogue.BY_CODE["CP_CASE_OPEN"]
    communes = ["120101", "120109", "120201"]
    months = [month_index(2025, m) for m in range(1, 13)]
    cells = [
        ((ind.code, dates.month_code(m), c, "F_Y0_4"), rng.choice([0, 1, 2, 3, 4, 6, 12]), None)
        for ind in (reg, open_)
        for m in months
        for c in communes
    ]
    periods = [Period.parse(p) for p in ("202502", "2025Q1", "2025")]
    places = [*communes, "1201", "1202", "12", "KH"]
    now = month_index(2025, 12)
    got = rounding.publish_table(cells, [reg, open_], periods, places, now, KEY)
    rounded = {cell: rounding.round_count(KEY, cell, v) for cell, v, _ in cells}

    def base(ind: str, month: int, place: str) -> int:
        return sum(
            r
            for (i, p, c, _), r in rounded.items()
            if i == ind and p == dates.month_code(month) and (place == "KH" or c.startswith(place))
        )

    for place in places:
        for period in periods:
            flow = got[("CP_CHILD_REG", period.code, place, "F_Y0_4")].value
            assert flow == sum(base("CP_CHILD_REG", m, place) for m in period.months)
            stock = got[("CP_CASE_OPEN", period.code, place, "F_Y0_4")].value
            assert stock == base("CP_CASE_OPEN", period.last, place)
            assert flow % 5 == 0
            assert stock % 5 == 0
    exact = rounding.publish_table(cells, [reg], periods[:1], ["KH"], now, None)
    assert exact[("CP_CHILD_REG", "202502", "KH", "F_Y0_4")].value == sum(
        v for (i, p, _, _), v, _ in cells if i == "CP_CHILD_REG" and p == "202502"
    )


def test_providers_count_where_they_serve_and_once_per_place() -> None:
    district = stocks.ProviderVersion("p1", 1, 0, True, ("health",), ("1201",))
    commune = stocks.ProviderVersion("p2", 1, 0, True, ("health",), ("120101",))
    closed = stocks.ProviderVersion("p3", 1, 0, False, ("health",), ("KH",))
    counts = stocks.provider_counts(
        [district, commune, closed], ["120101", "120109", "1201", "12", "KH", "1202"]
    )
    assert {p: c["health"] for p, c in counts.items()} == {
        "120101": 2,
        "120109": 1,
        "1201": 2,
        "12": 2,
        "KH": 2,
        "1202": 0,
    }


def test_places_at_a_level() -> None:
    assert geography.places_at("1201", None) == ["1201"]
    assert geography.places_at("1201", "commune")[:2] == ["120101", "120109"]
    assert len(geography.places_at("KH", "province")) == 25
    assert geography.descendants("1201")[:3] == ["1201", "120101", "120109"]


def test_dhis2_timestamps_are_utc_with_milliseconds() -> None:
    phnom_penh = timezone(timedelta(hours=7))
    moment = datetime(2026, 11, 1, 6, 5, 4, 987654, tzinfo=phnom_penh)
    assert timestamp(moment) == "2026-10-31T23:05:04.987+0000"
    assert timestamp(moment.replace(microsecond=0)) == "2026-10-31T23:05:04.000+0000"
    assert (
        timestamp(datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)) == "2026-01-02T03:04:05.000+0000"
    )
    assert timestamp(None) is None
