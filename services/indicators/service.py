"""The indicators use cases: apply events, roll stocks forward, answer tables."""

from __future__ import annotations

import secrets
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import clock
from libs.common.auth import COUNTRY, Principal
from libs.common.db import Database
from libs.common.errors import invalid
from libs.common.events import CloudEvent
from libs.common.logging import get_logger
from services.indicators import casework, catalogue, dates, effects, rounding, stocks
from services.indicators.store import bookkeeping, counting
from services.indicators.store import casework as casework_store
from services.indicators.store.bookkeeping import Target

log = get_logger(__name__)

# ---------------------------------------------------------------- applying events


async def apply_events(
    conn: AsyncConnection, target: Target, events: Sequence[CloudEvent], *, skip_invalid: bool
) -> int:
    """Apply events to one generation, each exactly once; return how many were new.

    With stock cells materialised (`stock_through` set) a child change adds its deltas to
    every month up to it; otherwise the versions are only recorded, and the month
    roll-forward computes the cells from them.
    """
    g = target.generation
    fresh = await bookkeeping.claim_events(conn, g, [e.id for e in events])
    applied = len(fresh)
    deltas: Counter[catalogue.CellKey] = Counter()
    children: list[stocks.ChildVersion] = []
    providers: list[stocks.ProviderVersion] = []
    records = _CaseworkRecords()
    for event in events:
        if event.id not in fresh:
            continue
        fresh.discard(event.id)
        try:
            meaning = effects.effects_of(event)
        except effects.InvalidEvent as exc:
            if not skip_invalid:
                raise
            log.warning(
                "indicators.event_skipped", event_id=event.id, type=event.type, why=str(exc)
            )
            continue
        for flow in meaning.flows:
            deltas.update(flow.cells())
        if meaning.child is not None:
            children.append(meaning.child)
        if meaning.provider is not None:
            providers.append(meaning.provider)
        records.add(meaning)
    await counting.insert_provider_versions(conn, g, providers)
    if target.stock_through is None:
        await counting.insert_child_versions(conn, g, children)
        await records.insert(conn, g)
    elif children or records.child_ids():
        deltas.update(await _stock_deltas(conn, g, children, records, target.stock_through))
    else:  # workers and caseloads only: read at a period's end, no cells
        await records.insert(conn, g)
    await counting.add_to_cells(conn, g, deltas)
    return applied


async def _stock_deltas(
    conn: AsyncConnection,
    generation: int,
    children: Sequence[stocks.ChildVersion],
    records: _CaseworkRecords,
    through: int,
) -> Counter[catalogue.CellKey]:
    """Record child versions and casework facts; return the stock deltas they make.

    The children concerned are locked (in one statement, so two consumers never wait on
    each other in a cycle); the case stocks change with each new version
    (`_child_stock_deltas`); the casework stocks of a child casework knows of are compared
    month by month before and after the batch (`casework.casework_deltas`), from the
    earliest month the batch may change.
    """
    versions_of = {c.child_id for c in children}
    told = records.child_ids()
    await bookkeeping.lock_children(conn, sorted(versions_of | told))
    followed = sorted(
        told | await casework_store.casework_children(conn, generation, sorted(versions_of - told))
    )
    before_facts = await casework_store.histories(conn, generation, followed)
    before_versions = await counting.child_histories(conn, generation, followed)
    deltas: Counter[catalogue.CellKey] = Counter()
    if children:
        deltas.update(await _child_stock_deltas(conn, generation, children, through))
    await records.insert(conn, generation)
    if not followed:
        return deltas
    after_facts = await casework_store.histories(conn, generation, followed)
    after_versions = await counting.child_histories(conn, generation, followed)
    starts = records.months_by_child()
    for child in children:
        starts.setdefault(child.child_id, []).append(child.effective)
    for child_id in followed:
        deltas.update(
            casework.casework_deltas(
                child_id,
                (before_versions.get(child_id, []), before_facts[child_id]),
                (after_versions.get(child_id, []), after_facts[child_id]),
                min(starts[child_id]),
                through,
            )
        )
    return deltas


@dataclass
class _CaseworkRecords:
    """The casework projections' rows a batch of events adds (read back at a period's end)."""

    workers: list[casework.WorkerVersion] = field(default_factory=list)
    caseloads: list[casework.CaseloadChange] = field(default_factory=list)
    assignments: list[casework.Assignment] = field(default_factory=list)
    flags: list[casework.VisitFlag] = field(default_factory=list)
    reintegrations: list[casework.Reintegration] = field(default_factory=list)
    followups: list[casework.Followup] = field(default_factory=list)

    def add(self, meaning: effects.Effects) -> None:
        if meaning.worker is not None:
            self.workers.append(meaning.worker)
        if meaning.caseload is not None:
            self.caseloads.append(meaning.caseload)
        if meaning.assignment is not None:
            self.assignments.append(meaning.assignment)
        if meaning.flag is not None:
            self.flags.append(meaning.flag)
        if meaning.reintegration is not None:
            self.reintegrations.append(meaning.reintegration)
        if meaning.followup is not None:
            self.followups.append(meaning.followup)

    def child_ids(self) -> set[str]:
        """The children these facts are about (workers' own facts are about no child)."""
        return {
            *(a.child_id for a in self.assignments),
            *(f.child_id for f in self.flags),
            *(r.child_id for r in self.reintegrations),
            *(f.child_id for f in self.followups),
        }

    def months_by_child(self) -> dict[str, list[int]]:
        """Per child, the months from which each of these facts may change its stocks."""
        out: dict[str, list[int]] = {}
        for child_id, day in (
            *((a.child_id, a.started_on) for a in self.assignments),
            *((f.child_id, f.on) for f in self.flags),
            *((r.child_id, r.on) for r in self.reintegrations),
            *((f.child_id, f.on) for f in self.followups),
        ):
            out.setdefault(child_id, []).append(dates.date_month(day))
        return out

    async def insert(self, conn: AsyncConnection, generation: int) -> None:
        await casework_store.insert_workers(conn, generation, self.workers)
        await casework_store.insert_caseloads(conn, generation, self.caseloads)
        await casework_store.upsert_assignments(conn, generation, self.assignments)
        await casework_store.insert_flags(conn, generation, self.flags)
        await casework_store.insert_reintegrations(conn, generation, self.reintegrations)
        await casework_store.insert_followups(conn, generation, self.followups)


async def _child_stock_deltas(
    conn: AsyncConnection, generation: int, children: Sequence[stocks.ChildVersion], through: int
) -> Counter[catalogue.CellKey]:
    """Record child versions and return their stock deltas, as if each were applied alone
    in turn: the children are locked, their histories read, and the versions inserted, each
    in one statement; every new version then changes the cells against the history so far.
    """
    ids = sorted({c.child_id for c in children})
    await bookkeeping.lock_children(conn, ids)
    known = await counting.child_histories(conn, generation, ids)
    new = await counting.insert_child_versions(conn, generation, children)
    deltas: Counter[catalogue.CellKey] = Counter()
    for child in children:
        key = (child.child_id, child.version)
        if key not in new:
            continue  # known before, or met earlier in this batch
        new.discard(key)
        history = known.setdefault(child.child_id, [])
        deltas.update(stocks.stock_deltas(history, child, through))
        history.append(child)
    return deltas


async def live_target(conn: AsyncConnection) -> Target:
    """Hold off a generation switch and a month roll-forward; the generation to write to."""
    await bookkeeping.lock_switch_shared(conn)
    return await bookkeeping.active_target(conn)


async def apply_live(conn: AsyncConnection, events: Sequence[CloudEvent]) -> None:
    """The consumers' handler: apply events, in order, to the answering generation."""
    await apply_events(conn, await live_target(conn), events, skip_invalid=False)


# ---------------------------------------------------------------- monthly stocks


async def roll_forward_generation(conn: AsyncConnection, generation: int, month: int) -> int:
    """Materialise the stock cells of every month up to `month`; return how many months.

    The caller makes sure no one adds stock deltas to this generation meanwhile: the
    answering generation is rolled under the exclusive switch lock, a building one only by
    its rebuild.
    """
    target = await bookkeeping.target_of(conn, generation)
    if target.stock_through is not None and target.stock_through >= month:
        return 0
    if target.stock_through is not None:
        start = target.stock_through + 1
    else:
        start = min(await counting.first_child_month(conn, generation) or month, month)
    for m in range(start, month + 1):
        await counting.materialise_month(conn, generation, m)
        await _materialise_casework(conn, generation, m)
    await bookkeeping.set_stock_through(conn, generation, month)
    log.info("indicators.stocks_rolled", generation=generation, through=dates.month_code(month))
    return month + 1 - start


async def roll_forward(db: Database, month: int | None = None) -> int:
    """Bring the answering generation's stock cells up to the current month.

    Once a month it holds the switch lock exclusively while it computes the new month, so
    no event's stock deltas fall between the months done and the month being done.
    """
    month = dates.current_month() if month is None else month
    async with db.transaction() as conn:
        active = await bookkeeping.active_target(conn)
        if active.stock_through is not None and active.stock_through >= month:
            return 0
    async with db.transaction() as conn:
        await bookkeeping.lock_switch(conn)
        active = await bookkeeping.active_target(conn)
        return await roll_forward_generation(conn, active.generation, month)


# ---------------------------------------------------------------- tables of values


@dataclass(frozen=True, slots=True)
class Row:
    """One value of one indicator, period, place and category option combo."""

    indicator: str
    period: dates.Period
    place: str
    combo: str
    value: int
    rounded: bool  # published after the small-cell rounding (a principal without detail)
    last_updated: datetime | None  # when a cell the value is made of last changed

    @property
    def suppressed(self) -> bool:
        """Always false: nothing is withheld (kept in the answers for existing clients)."""
        return False


def check_periods(periods: Iterable[dates.Period], now: int, field: str = "period") -> None:
    """422 for a period that has not started."""
    for p in periods:
        if p.first > now:
            raise invalid(field, f"{p.code} lies in the future")


# ---------------------------------------------------------------- casework stocks


async def _materialise_casework(conn: AsyncConnection, generation: int, month: int) -> None:
    """A month's casework stock cells (CP_CHILD_ASSIGNED, CP_VISIT_OVERDUE,
    CP_REINTEGRATION_FOLLOWED) from the projections, as on the month's last day: the same
    rule as `casework.contributions`, for every child at once (once a month, and by a
    rebuild for every month; counting.materialise_month has just cleared the month)."""
    day = dates.last_day(month)
    chosen = {
        "CP_CHILD_ASSIGNED": (await casework_store.assigned_at(conn, generation, day))[0],
        "CP_VISIT_OVERDUE": (await casework_store.overdue_at(conn, generation, day))[0],
        "CP_REINTEGRATION_FOLLOWED": (await casework_store.followed_at(conn, generation, day))[0],
    }
    ids = sorted(set().union(*chosen.values()))
    if not ids:
        return
    states = await casework_store.child_states_at(conn, generation, ids, month)
    period = dates.month_code(month)
    deltas: Counter[catalogue.CellKey] = Counter()
    for code, children in chosen.items():
        counted = casework.child_cells(
            code, children, states, month, open_only=code == "CP_CHILD_ASSIGNED"
        )
        for (commune, combo), n in counted.items():
            deltas[(code, period, commune, combo)] += n
    await counting.add_to_cells(conn, generation, deltas)


# ---------------------------------------------------------------- the rounding key

_KEYS: weakref.WeakKeyDictionary[Database, bytes] = weakref.WeakKeyDictionary()


async def rounding_key(db: Database) -> bytes:
    """The small-cell rounding key of this database, made once and then only read.

    Kept in the indicators schema (one row), so replicas, restarts and rebuilds round every
    cell identically; read once per process (two first reads at once both read the one
    stored row).
    """
    key = _KEYS.get(db)
    if key is None:
        async with db.transaction() as conn:
            key = await bookkeeping.rounding_key(conn, secrets.token_bytes(32))
        _KEYS[db] = key
    return key


# ---------------------------------------------------------------- tables of values


async def table(
    db: Database,
    principal: Principal,
    indicators: Sequence[catalogue.Indicator],
    periods: Sequence[dates.Period],
    places_: Sequence[str],
) -> list[Row]:
    """Values for every indicator x period x place x combo, exact or rounded.

    A principal without indicators:read:detail is shown every count rounded (the rule of
    catalogue.SMALL_CELL_RULE): base cells rounded, everything else their sum, so `values` and
    `dataValueSets` give the same numbers whatever the query's shape.
    """
    now = dates.current_month()
    check_periods(periods, now)
    await roll_forward(db, now)
    detail = principal.has("indicators:read:detail")
    key = None if detail else await rounding_key(db)
    needed = set(places_)
    prefixes = {"" if p == COUNTRY else p for p in places_}
    codes = {i.code for i in indicators}
    if key is not None and catalogue.AMOUNT in codes:
        codes.add(catalogue.AMOUNT_COUNT)  # the riel follow their rounded grant count
    additive = [c for c in sorted(codes) if catalogue.BY_CODE[c].roll_up is catalogue.RollUp.sum]
    storage = sorted(
        {
            stored
            for c in additive
            for p in periods
            for stored in rounding.storage_of(
                catalogue.BY_CODE[c], p, now, by_month=key is not None
            )
        }
    )
    providers: dict[tuple[str, str, str, str], rounding.Tally] = {}
    today = clock.today()
    async with bookkeeping.snapshot(db) as conn:
        target = await bookkeeping.active_target(conn)
        found: list[Any] = (
            await counting.read_cells(conn, target.generation, additive, storage, prefixes)
            if additive
            else []
        )
        worker_codes = sorted(codes & catalogue.WORKER_INDICATORS)
        if worker_codes:
            for period in periods:
                month = min(period.last, now)
                day = dates.stock_day(month, today)
                workers, over, changed = await casework_store.workers_at(
                    conn, target.generation, month, day
                )
                counted = casework.worker_counts(workers, over, needed, day)
                for code in worker_codes:
                    for place, by_role in counted[code].items():
                        for role, n in by_role.items():
                            providers[(code, period.code, place, role)] = rounding.Tally(n, changed)
        if "CP_PROVIDERS" in codes:  # distinct counts: exact, read at the period's end
            for period in periods:
                month = min(period.last, now)
                versions, changed = await counting.providers_at(conn, target.generation, month)
                for place, by_type in stocks.provider_counts(versions, needed).items():
                    for service_type, n in by_type.items():
                        providers[("CP_PROVIDERS", period.code, place, service_type)] = (
                            rounding.Tally(n, changed)
                        )
    values = rounding.publish_rows(found, indicators, periods, places_, now, key)
    values.update(providers)
    empty = rounding.Tally()
    rows: list[Row] = []
    for ind in indicators:
        rounded = key is not None and ind.code in catalogue.ROUNDED
        for period in periods:
            for place in places_:
                for combo in ind.combo.combos:
                    got = values.get((ind.code, period.code, place, combo.code), empty)
                    rows.append(
                        Row(
                            indicator=ind.code,
                            period=period,
                            place=place,
                            combo=combo.code,
                            value=got.value,
                            rounded=rounded,
                            last_updated=got.updated,
                        )
                    )
    return rows
