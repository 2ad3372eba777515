"""The attacker's audit of the small-cell rule, on many randomised data sets.

For each data set (districts of crowded and sparse communes, the twelve months of a year,
every sex x age combo of a flow, CP_CHILD_REG, and of a stock, CP_CASE_OPEN) everything a
principal without `indicators:read:detail` is shown — every commune, district, province and
KH, for every month, quarter and the year — is computed by the code that answers them
(rounding.publish_table, as service.table calls it). Then, for every protected cell (a true
count of 1 to 4 at commune level, any period), two linear programmes bound it from all of
that (tests/indicators/audit.py): the range must include 0 or a value of 5 or more.

The suppression this rule replaced fails the same audit: a quarter minus its months gave
a hidden month back.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from services.indicators import catalogue, geography, rounding
from services.indicators.catalogue import Indicator
from services.indicators.dates import Period, month_code, month_index
from tests.indicators.audit import Base, Number, audit, by_district

YEAR = 2025
MONTHS = [month_index(YEAR, m) for m in range(1, 13)]
NOW = MONTHS[-1]
PERIODS = [
    *(Period.parse(month_code(m)) for m in MONTHS),
    *(Period.parse(f"{YEAR}Q{q}") for q in range(1, 5)),
    Period.parse(str(YEAR)),
]
REG = catalogue.BY_CODE["CP_CHILD_REG"]
OPEN = catalogue.BY_CODE["CP_CASE_OPEN"]
COMBOS = [c.code for c in REG.combo.combos]  # sex x age band, all eight
DATA_SETS = 10

Truth = dict[Base, int]


def data_set(rng: random.Random) -> tuple[list[str], Truth]:
    """Two provinces of two districts of 2 or 3 communes: crowded ones, and sparse or small
    ones where a few combos carry counts of 1 to 4 month after month."""
    communes = [
        f"{province}{district:02d}{commune:02d}"
        for province in ("91", "92")
        for district in (1, 2)
        for commune in range(1, rng.randint(2, 3) + 1)
    ]
    truth: Truth = {}
    for commune in communes:
        kind = rng.choice(["crowded", "crowded", "sparse", "small"])
        for combo in COMBOS:
            active = kind == "crowded" or rng.random() < 0.3
            stock = rng.randint(0, 3) if active else 0
            for m in MONTHS:
                if not active:
                    new = 0
                elif kind == "crowded":
                    new = rng.randint(0, 14)
                elif kind == "small":
                    new = rng.choice([0, 1, 1, 2, 3, 4])
                else:
                    new = rng.choice([0, 0, 0, 0, 1, 2, 3])
                stock = max(0, stock + new - rng.randint(0, 2))
                truth[(REG.code, month_code(m), commune, combo)] = new
                truth[(OPEN.code, month_code(m), commune, combo)] = stock
    return communes, truth


def places_of(communes: list[str]) -> list[str]:
    return sorted({*communes, *(c[:4] for c in communes), *(c[:2] for c in communes), "KH"})


def cells_of(
    ind: Indicator, period: Period, place: str, combo: str, communes: list[str]
) -> frozenset[Base]:
    """The base cells a published number sums, by the published rule: a place's communes;
    a flow's months, a stock's last month."""
    months = period.months if ind.kind is catalogue.Kind.flow else [period.last]
    inside = [c for c in communes if place == "KH" or c.startswith(place)]
    return frozenset((ind.code, month_code(m), c, combo) for m in months for c in inside)


def protected_cells(
    communes: list[str], truth: Truth, values: dict[tuple[str, str, str, str], int]
) -> tuple[list[Number], list[tuple[frozenset[Base], int]]]:
    """Every published number with the cells it covers; the protected cells, true values."""
    published: list[Number] = []
    protected: list[tuple[frozenset[Base], int]] = []
    for ind in (REG, OPEN):
        for period in PERIODS:
            for place in places_of(communes):
                for combo in COMBOS:
                    cells = cells_of(ind, period, place, combo, communes)
                    published.append(Number(cells, values[(ind.code, period.code, place, combo)]))
                    true_value = sum(truth[c] for c in cells)
                    if len(place) == geography.COMMUNE_LENGTH and 1 <= true_value <= 4:
                        protected.append((cells, true_value))
    return published, protected


def rounded_table(communes: list[str], truth: Truth, key: bytes) -> dict[rounding.TableKey, int]:
    cells = [(cell, v, None) for cell, v in truth.items()]
    table = rounding.publish_table(cells, [REG, OPEN], PERIODS, places_of(communes), NOW, key)
    return {k: t.value for k, t in table.items()}


def test_no_small_count_is_recoverable_from_everything_published() -> None:
    rng = random.Random(20261202)
    totals: Counter[str] = Counter()
    for _ in range(DATA_SETS):
        communes, truth = data_set(rng)
        key = rng.randbytes(32)
        values = rounded_table(communes, truth, key)
        # every (indicator, period, place, combo) is answered, every count a multiple of 5
        assert len(values) == 2 * len(PERIODS) * len(places_of(communes)) * len(COMBOS)
        assert all(v % 5 == 0 for v in values.values())
        published, protected = protected_cells(communes, truth, values)
        findings = audit(published, protected, by_district)
        assert len(findings) == 2 * len({cells for cells, _ in protected})
        recoverable = [f for f in findings if f.recoverable]
        assert not recoverable, recoverable[:3]
        totals["data sets"] += 1
        totals["protected cells"] += len({cells for cells, _ in protected})
        totals["published numbers"] += len(published)
        totals["linear programmes"] += 2 * len(findings)
        totals["recoverable"] += len(recoverable)
    print(f"\nsmall-cell audit: {dict(totals)}")
    assert totals["protected cells"] > 2000


# ---------------------------------------------------------------- the rule it replaced


def old_suppressed(values: dict[str, int]) -> set[str]:
    """The former rule, per district group: 1..4 hidden; while exactly one is hidden, the
    next smallest non-zero sibling (lowest code first), or a zero one, is hidden too."""
    hidden = {c for c, v in values.items() if 1 <= v <= 4}
    while len(hidden) == 1:
        rest = sorted((v, c) for c, v in values.items() if c not in hidden)
        pick = [(v, c) for v, c in rest if v > 0] or rest
        if not pick:
            break
        hidden.add(pick[0][1])
    return hidden


def old_published(communes: list[str], truth: Truth) -> list[Number]:
    """What the former rule published: exact values, commune cells suppressed by district
    group, each period on its own."""
    out: list[Number] = []
    for ind in (REG, OPEN):
        for period in PERIODS:
            for combo in COMBOS:
                exact = {
                    place: sum(truth[c] for c in cells_of(ind, period, place, combo, communes))
                    for place in places_of(communes)
                }
                hidden: set[str] = set()
                for district in {c[:4] for c in communes}:
                    group = {c: exact[c] for c in communes if c.startswith(district)}
                    hidden |= old_suppressed(group)
                for place, value in exact.items():
                    if place not in hidden:
                        cells = cells_of(ind, period, place, combo, communes)
                        out.append(Number(cells, value))
    return out


def recovered(published: list[Number], protected: Iterable[tuple[frozenset[Base], int]]) -> int:
    return sum(1 for f in audit(published, list(protected)) if f.model == "exact" and f.recoverable)


def test_the_former_suppression_fails_the_same_audit() -> None:
    # Commune A: 2 in January (hidden, with its smallest sibling), 10 in February and in
    # March (published), 22 in the quarter (published): 22 - 10 - 10 = 2.
    communes = ["910101", "910102", "910103"]
    truth: Truth = {}
    months = {month_code(m): m for m in MONTHS}
    for ind in (REG, OPEN):
        for code in months:
            for c in communes:
                for combo in COMBOS:
                    truth[(ind.code, code, c, combo)] = 0
    a, b, c = communes
    for commune, (jan, feb, mar) in {a: (2, 10, 10), b: (20, 20, 20), c: (30, 30, 30)}.items():
        for code, v in zip((f"{YEAR}01", f"{YEAR}02", f"{YEAR}03"), (jan, feb, mar), strict=True):
            truth[(REG.code, code, commune, "F_Y0_4")] = v
    january = cells_of(REG, Period.parse(f"{YEAR}01"), a, "F_Y0_4", communes)
    published = old_published(communes, truth)
    assert all(n.cells != january for n in published)  # January of A itself is hidden ...
    findings = audit(published, [(january, 2)], models=["exact"])
    assert (round(findings[0].low), round(findings[0].high)) == (2, 2)  # ... and recovered
    # the rounding of today publishes it as 0 or 5, and nothing pins it
    values = rounded_table(communes, truth, b"k" * 32)
    assert values[(REG.code, f"{YEAR}01", a, "F_Y0_4")] in (0, 5)
    rounded, protected = protected_cells(communes, truth, values)
    assert not [f for f in audit(rounded, protected) if f.recoverable]

    # and on the randomised data sets, the former rule gives small counts away
    rng = random.Random(20261202)
    communes, truth = data_set(rng)
    _, protected = protected_cells(communes, truth, rounded_table(communes, truth, b"k" * 32))
    lost = recovered(old_published(communes, truth), protected)
    print(f"\nformer suppression: {lost} of {len(protected)} protected cells recovered")
    assert lost > 0
