"""Casework (docs/api-guide.md#casework) as the indicators know it: workers, caseloads,
assignments, overdue flags, reintegrations and follow-ups, and the stocks they make at a
period's end. No I/O.

Every record is ids, codes, roles and dates: never a worker's name or phone, never a visit's
notes (the events do not carry them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from services.indicators.catalogue import CellKey
from services.indicators.dates import add_months, date_month, last_day, month_code
from services.indicators.stocks import (
    ChildState,
    ChildVersion,
    age_band,
    distinct_counts,
    state_at,
)

FOLLOWUP_MONTHS = (1, 3, 6, 12)  # follow-ups due these calendar months after the move
BASIC_COURSE = "child_protection_basics"


@dataclass(frozen=True)
class WorkerVersion:
    """A worker at one version: role, places served, status, contracts, basic training."""

    worker_id: str
    version: int
    effective: int  # month index from which this version holds (Cambodia month of the event)
    status: str
    role: str
    areas: tuple[str, ...]
    contracts: tuple[tuple[date, date | None], ...]  # (start_on, end_on inclusive or None)
    trained_on: date | None  # first completion of child_protection_basics

    def under_contract(self, day: date) -> bool:
        return any(start <= day and (end is None or day <= end) for start, end in self.contracts)

    def is_active(self, day: date) -> bool:
        """Status active with a contract current on the day."""
        return self.status == "active" and self.under_contract(day)

    def is_trained(self, day: date) -> bool:
        """Active, and child_protection_basics completed on or before the day."""
        return self.is_active(day) and self.trained_on is not None and self.trained_on <= day


@dataclass(frozen=True)
class CaseloadChange:
    """A worker's caseload after one assignment change, dated by the change."""

    event_id: str
    worker_id: str
    on: date  # started_on of a start, ended_on of an end
    at: datetime  # the event's time (orders two changes of one day)
    caseload: int
    max_caseload: int


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    child_id: str
    worker_id: str
    started_on: date
    ended_on: date | None

    def active_on(self, day: date) -> bool:
        return self.started_on <= day and (self.ended_on is None or self.ended_on > day)


@dataclass(frozen=True)
class VisitFlag:
    """A child flagged overdue (or cleared) on a day."""

    event_id: str
    child_id: str
    on: date
    at: datetime
    overdue: bool


@dataclass(frozen=True)
class Reintegration:
    event_id: str
    child_id: str
    on: date


@dataclass(frozen=True)
class Followup:
    """The reintegration follow-ups (months after the move) one visit made."""

    visit_id: str
    child_id: str
    on: date
    months: tuple[int, ...]


def followed(reintegrated_on: date, made: Iterable[int], day: date) -> bool:
    """Whether a child reintegrated on a day counts as followed up on `day`: its first
    follow-up made, and every follow-up due by `day` made."""
    done = set(made)
    if FOLLOWUP_MONTHS[0] not in done:
        return False
    return all(k in done for k in FOLLOWUP_MONTHS if add_months(reintegrated_on, k) <= day)


def followed_children(
    reintegrations: Iterable[Reintegration], followups: Iterable[Followup], day: date
) -> set[str]:
    """Children followed up on `day`, each by its latest reintegration on or before it and
    the follow-ups of visits from that reintegration's day up to `day`."""
    latest: dict[str, date] = {}
    for r in reintegrations:
        if r.on <= day and (r.child_id not in latest or r.on > latest[r.child_id]):
            latest[r.child_id] = r.on
    made: dict[str, set[int]] = {}
    for f in followups:
        since = latest.get(f.child_id)
        if since is not None and since <= f.on <= day:
            made.setdefault(f.child_id, set()).update(f.months)
    return {c for c, on in latest.items() if followed(on, made.get(c, ()), day)}


def overdue_children(flags: Iterable[VisitFlag], day: date) -> set[str]:
    """Children whose newest flag or clearing on or before `day` is a flag."""
    newest: dict[str, VisitFlag] = {}
    for f in flags:
        if f.on > day:
            continue
        best = newest.get(f.child_id)
        if best is None or (f.on, f.at, f.event_id) > (best.on, best.at, best.event_id):
            newest[f.child_id] = f
    return {c for c, f in newest.items() if f.overdue}


def assigned_children(assignments: Iterable[Assignment], day: date) -> set[str]:
    return {a.child_id for a in assignments if a.active_on(day)}


def over_caseload(changes: Iterable[CaseloadChange], day: date) -> set[str]:
    """Workers whose latest caseload change on or before `day` leaves them above their max."""
    newest: dict[str, CaseloadChange] = {}
    for c in changes:
        if c.on > day:
            continue
        best = newest.get(c.worker_id)
        if best is None or (c.on, c.at, c.event_id) > (best.on, best.at, best.event_id):
            newest[c.worker_id] = c
    return {w for w, c in newest.items() if c.caseload > c.max_caseload}


def child_cells(
    indicator: str,
    children: Iterable[str],
    states: Mapping[str, ChildState],
    month: int,
    *,
    open_only: bool,
) -> Counter[tuple[str, str]]:
    """(commune, sex_age combo) counts of some children by their state at a month's end;
    a child the registry has not told of by then is not counted."""
    out: Counter[tuple[str, str]] = Counter()
    for child in children:
        state = states.get(child)
        if state is None or (open_only and state.status != "open"):
            continue
        out[(state.commune, f"{state.sex}_{age_band(state.birth_month, month)}")] += 1
    return out


def worker_counts(
    workers: Sequence[WorkerVersion], over: set[str], places_: Iterable[str], day: date
) -> dict[str, dict[str, Counter[str]]]:
    """Distinct workers per indicator, place and role on a day (counted where they serve)."""
    places_ = list(places_)
    active = [w for w in workers if w.is_active(day)]
    return {
        "CP_WORKERS_ACTIVE": distinct_counts([(w.areas, (w.role,)) for w in active], places_),
        "CP_WORKERS_TRAINED": distinct_counts(
            [(w.areas, (w.role,)) for w in active if w.is_trained(day)], places_
        ),
        "CP_CASELOAD_OVER": distinct_counts(
            [(w.areas, (w.role,)) for w in workers if w.worker_id in over], places_
        ),
    }


@dataclass
class ChildCasework:
    """Everything casework says about one child: what its casework stocks are made of."""

    assignments: list[Assignment]
    flags: list[VisitFlag]
    reintegrations: list[Reintegration]
    followups: list[Followup]

    @property
    def empty(self) -> bool:
        return not (self.assignments or self.flags or self.reintegrations or self.followups)

    def months(self) -> list[int]:
        """The months from which each fact may change a stock."""
        return [
            *(date_month(a.started_on) for a in self.assignments),
            *(date_month(f.on) for f in self.flags),
            *(date_month(r.on) for r in self.reintegrations),
            *(date_month(f.on) for f in self.followups),
        ]


def no_casework() -> ChildCasework:
    return ChildCasework([], [], [], [])


CASEWORK_STOCKS = ("CP_CHILD_ASSIGNED", "CP_VISIT_OVERDUE", "CP_REINTEGRATION_FOLLOWED")


def contributions(
    child_id: str, state: ChildState | None, facts: ChildCasework, month: int
) -> list[tuple[str, str, str]]:
    """(indicator, commune, combo) cells a child adds 1 to at the end of a month (its last
    day) in the casework stocks; nothing for a child the registry has not told of."""
    if state is None or facts.empty:
        return []
    day = last_day(month)
    combo = f"{state.sex}_{age_band(state.birth_month, month)}"
    out = []
    if state.status == "open" and assigned_children(facts.assignments, day):
        out.append(("CP_CHILD_ASSIGNED", state.commune, combo))
    if overdue_children(facts.flags, day):
        out.append(("CP_VISIT_OVERDUE", state.commune, combo))
    if followed_children(facts.reintegrations, facts.followups, day):
        out.append(("CP_REINTEGRATION_FOLLOWED", state.commune, combo))
    return out


def casework_deltas(
    child_id: str,
    before: tuple[Sequence[ChildVersion], ChildCasework],
    after: tuple[Sequence[ChildVersion], ChildCasework],
    start: int,
    through: int,
) -> Counter[CellKey]:
    """Changes to a child's monthly casework stock cells from `start` to `through` between
    two states of what is known of it (its versions and its casework facts)."""
    out: Counter[CellKey] = Counter()
    for month in range(start, through + 1):
        old_v, new_v = state_at(before[0], month), state_at(after[0], month)
        old = contributions(child_id, old_v.state if old_v else None, before[1], month)
        new = contributions(child_id, new_v.state if new_v else None, after[1], month)
        if old == new:
            continue
        code = month_code(month)
        for ind, commune, combo in old:
            out[(ind, code, commune, combo)] -= 1
        for ind, commune, combo in new:
            out[(ind, code, commune, combo)] += 1
    return Counter({k: v for k, v in out.items() if v})
