"""SQL of the casework projections the indicators keep (docs/api-guide.md#casework): worker
versions, caseloads, assignments, overdue flags, reintegrations and follow-ups, and the reads that
take their stocks at a period's end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.indicators import casework, stocks


def _contract(c: tuple[date, date | None]) -> str:
    return f"{c[0].isoformat()}/{c[1].isoformat() if c[1] else ''}"


def _parse_contract(value: str) -> tuple[date, date | None]:
    start, _, end = value.partition("/")
    return date.fromisoformat(start), date.fromisoformat(end) if end else None


async def insert_workers(
    conn: AsyncConnection, generation: int, versions: Sequence[casework.WorkerVersion]
) -> None:
    """Record worker versions (a version seen before is left as it is)."""
    if not versions:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.worker_versions
                   (generation, worker_id, version, effective_month, status, role, areas,
                    contracts, trained_on)
            SELECT :g, w, v, e, s, r,
                   COALESCE(string_to_array(NULLIF(ar, ''), ','), '{}'),
                   COALESCE(string_to_array(NULLIF(co, ''), ','), '{}'), t
            FROM unnest(CAST(:w AS uuid[]), CAST(:v AS int[]), CAST(:e AS int[]),
                        CAST(:s AS text[]), CAST(:r AS text[]), CAST(:ar AS text[]),
                        CAST(:co AS text[]), CAST(:t AS date[]))
                 AS d(w, v, e, s, r, ar, co, t)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "w": [x.worker_id for x in versions],
            "v": [x.version for x in versions],
            "e": [x.effective for x in versions],
            "s": [x.status for x in versions],
            "r": [x.role for x in versions],
            "ar": [",".join(x.areas) for x in versions],
            "co": [",".join(_contract(c) for c in x.contracts) for x in versions],
            "t": [x.trained_on for x in versions],
        },
    )


async def insert_caseloads(
    conn: AsyncConnection, generation: int, changes: Sequence[casework.CaseloadChange]
) -> None:
    if not changes:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.worker_caseloads
                   (generation, event_id, worker_id, on_day, at, caseload, max_caseload)
            SELECT :g, i, w, o, a, c, m
            FROM unnest(CAST(:i AS uuid[]), CAST(:w AS uuid[]), CAST(:o AS date[]),
                        CAST(:a AS timestamptz[]), CAST(:c AS int[]), CAST(:m AS int[]))
                 AS d(i, w, o, a, c, m)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "i": [x.event_id for x in changes],
            "w": [x.worker_id for x in changes],
            "o": [x.on for x in changes],
            "a": [x.at for x in changes],
            "c": [x.caseload for x in changes],
            "m": [x.max_caseload for x in changes],
        },
    )


async def upsert_assignments(
    conn: AsyncConnection, generation: int, found: Sequence[casework.Assignment]
) -> None:
    """Record assignments; an end (in whichever order it arrives) sets ended_on, the latest
    end kept. Merged per assignment first (one statement touches a row once)."""
    if not found:
        return
    merged: dict[str, casework.Assignment] = {}
    for a in found:
        known = merged.get(a.assignment_id)
        if known is not None and known.ended_on is not None:
            if a.ended_on is None or a.ended_on < known.ended_on:
                a = casework.Assignment(
                    a.assignment_id, a.child_id, a.worker_id, a.started_on, known.ended_on
                )
        merged[a.assignment_id] = a
    rows = [merged[k] for k in sorted(merged)]
    await conn.execute(
        text(
            """
            INSERT INTO indicators.assignments
                   (generation, assignment_id, child_id, worker_id, started_on, ended_on)
            SELECT :g, i, c, w, s, e
            FROM unnest(CAST(:i AS uuid[]), CAST(:c AS uuid[]), CAST(:w AS uuid[]),
                        CAST(:s AS date[]), CAST(:e AS date[])) AS d(i, c, w, s, e)
            ON CONFLICT (generation, assignment_id) DO UPDATE
               SET ended_on = GREATEST(assignments.ended_on, excluded.ended_on),
                   recorded_at = now()
               WHERE excluded.ended_on IS NOT NULL
            """
        ),
        {
            "g": generation,
            "i": [x.assignment_id for x in rows],
            "c": [x.child_id for x in rows],
            "w": [x.worker_id for x in rows],
            "s": [x.started_on for x in rows],
            "e": [x.ended_on for x in rows],
        },
    )


async def insert_flags(
    conn: AsyncConnection, generation: int, flags: Sequence[casework.VisitFlag]
) -> None:
    if not flags:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.visit_flags (generation, event_id, child_id, on_day, at, overdue)
            SELECT :g, i, c, o, a, f
            FROM unnest(CAST(:i AS uuid[]), CAST(:c AS uuid[]), CAST(:o AS date[]),
                        CAST(:a AS timestamptz[]), CAST(:f AS bool[])) AS d(i, c, o, a, f)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "i": [x.event_id for x in flags],
            "c": [x.child_id for x in flags],
            "o": [x.on for x in flags],
            "a": [x.at for x in flags],
            "f": [x.overdue for x in flags],
        },
    )


async def insert_reintegrations(
    conn: AsyncConnection, generation: int, found: Sequence[casework.Reintegration]
) -> None:
    if not found:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.reintegrations (generation, event_id, child_id, on_day)
            SELECT :g, i, c, o
            FROM unnest(CAST(:i AS uuid[]), CAST(:c AS uuid[]), CAST(:o AS date[])) AS d(i, c, o)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "i": [x.event_id for x in found],
            "c": [x.child_id for x in found],
            "o": [x.on for x in found],
        },
    )


async def insert_followups(
    conn: AsyncConnection, generation: int, found: Sequence[casework.Followup]
) -> None:
    if not found:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.followups (generation, visit_id, child_id, on_day, months)
            SELECT :g, i, c, o, CAST(string_to_array(m, ',') AS smallint[])
            FROM unnest(CAST(:i AS uuid[]), CAST(:c AS uuid[]), CAST(:o AS date[]),
                        CAST(:m AS text[])) AS d(i, c, o, m)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "i": [x.visit_id for x in found],
            "c": [x.child_id for x in found],
            "o": [x.on for x in found],
            "m": [",".join(str(k) for k in x.months) for x in found],
        },
    )


# ---------------------------------------------------------------- reads at a period's end


def _newest(times: Iterable[datetime | None]) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


async def workers_at(
    conn: AsyncConnection, generation: int, month: int, day: date
) -> tuple[list[casework.WorkerVersion], set[str], datetime | None]:
    """Each worker's version in force at the end of a month, the workers above their
    maximum caseload on `day`, and when any of it last changed."""
    rows = (
        await conn.execute(
            text(
                """
                SELECT DISTINCT ON (worker_id)
                       worker_id, version, effective_month, status, role, areas, contracts,
                       trained_on, max(recorded_at) OVER () AS last_change
                FROM indicators.worker_versions
                WHERE generation = :g AND effective_month <= :m
                ORDER BY worker_id, version DESC
                """
            ),
            {"g": generation, "m": month},
        )
    ).all()
    workers = [
        casework.WorkerVersion(
            worker_id=str(r.worker_id),
            version=r.version,
            effective=r.effective_month,
            status=r.status,
            role=r.role,
            areas=tuple(r.areas),
            contracts=tuple(_parse_contract(c) for c in r.contracts),
            trained_on=r.trained_on,
        )
        for r in rows
    ]
    loads = (
        await conn.execute(
            text(
                """
                SELECT DISTINCT ON (worker_id)
                       event_id, worker_id, on_day, at, caseload, max_caseload,
                       max(recorded_at) OVER () AS last_change
                FROM indicators.worker_caseloads
                WHERE generation = :g AND on_day <= :d
                ORDER BY worker_id, on_day DESC, at DESC, event_id DESC
                """
            ),
            {"g": generation, "d": day},
        )
    ).all()
    over = casework.over_caseload(
        (
            casework.CaseloadChange(
                str(r.event_id), str(r.worker_id), r.on_day, r.at, r.caseload, r.max_caseload
            )
            for r in loads
        ),
        day,
    )
    changed = _newest(
        [rows[0].last_change if rows else None, loads[0].last_change if loads else None]
    )
    return workers, over, changed


async def child_states_at(
    conn: AsyncConnection, generation: int, child_ids: Sequence[str], month: int
) -> dict[str, stocks.ChildState]:
    """The state at the end of a month of some children (those not known by then absent)."""
    if not child_ids:
        return {}
    rows = await conn.execute(
        text(
            """
            SELECT DISTINCT ON (child_id)
                   child_id, commune, sex, birth_month, status, risk, vulnerabilities,
                   care_setting
            FROM indicators.child_versions
            WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))
              AND effective_month <= :m
            ORDER BY child_id, version DESC
            """
        ),
        {"g": generation, "ids": list(child_ids), "m": month},
    )
    return {
        str(r.child_id): stocks.ChildState(
            commune=r.commune,
            sex=r.sex,
            birth_month=r.birth_month,
            status=r.status,
            risk=r.risk,
            vulnerabilities=tuple(r.vulnerabilities),
            care_setting=r.care_setting,
        )
        for r in rows
    }


async def assigned_at(
    conn: AsyncConnection, generation: int, day: date
) -> tuple[set[str], datetime | None]:
    """Children with an active assignment on a day, and when those assignments changed."""
    rows = (
        await conn.execute(
            text(
                """
                SELECT DISTINCT child_id, max(recorded_at) OVER () AS last_change
                FROM indicators.assignments
                WHERE generation = :g AND started_on <= :d
                  AND (ended_on IS NULL OR ended_on > :d)
                """
            ),
            {"g": generation, "d": day},
        )
    ).all()
    return {str(r.child_id) for r in rows}, (rows[0].last_change if rows else None)


async def overdue_at(
    conn: AsyncConnection, generation: int, day: date
) -> tuple[set[str], datetime | None]:
    """Children flagged overdue on a day (newest flag or clearing by then is a flag)."""
    rows = (
        await conn.execute(
            text(
                """
                SELECT DISTINCT ON (child_id)
                       event_id, child_id, on_day, at, overdue,
                       max(recorded_at) OVER () AS last_change
                FROM indicators.visit_flags
                WHERE generation = :g AND on_day <= :d
                ORDER BY child_id, on_day DESC, at DESC, event_id DESC
                """
            ),
            {"g": generation, "d": day},
        )
    ).all()
    flags = [
        casework.VisitFlag(str(r.event_id), str(r.child_id), r.on_day, r.at, r.overdue)
        for r in rows
    ]
    return casework.overdue_children(flags, day), (rows[0].last_change if rows else None)


async def followed_at(
    conn: AsyncConnection, generation: int, day: date
) -> tuple[set[str], datetime | None]:
    """Reintegrated children followed up on a day (casework.followed_children)."""
    moves = (
        await conn.execute(
            text(
                """
                SELECT event_id, child_id, on_day, max(recorded_at) OVER () AS last_change
                FROM indicators.reintegrations
                WHERE generation = :g AND on_day <= :d
                """
            ),
            {"g": generation, "d": day},
        )
    ).all()
    if not moves:
        return set(), None
    visits = (
        await conn.execute(
            text(
                """
                SELECT visit_id, child_id, on_day, months,
                       max(recorded_at) OVER () AS last_change
                FROM indicators.followups
                WHERE generation = :g AND on_day <= :d
                  AND child_id = ANY(CAST(:ids AS uuid[]))
                """
            ),
            {"g": generation, "d": day, "ids": sorted({str(r.child_id) for r in moves})},
        )
    ).all()
    followed = casework.followed_children(
        [casework.Reintegration(str(r.event_id), str(r.child_id), r.on_day) for r in moves],
        [
            casework.Followup(str(r.visit_id), str(r.child_id), r.on_day, tuple(r.months))
            for r in visits
        ],
        day,
    )
    changed = _newest([moves[0].last_change, visits[0].last_change if visits else None])
    return followed, changed


async def histories(
    conn: AsyncConnection, generation: int, child_ids: Sequence[str]
) -> dict[str, casework.ChildCasework]:
    """Every casework fact of some children (each present, an empty one when none)."""
    out = {c: casework.no_casework() for c in child_ids}
    if not child_ids:
        return out
    params = {"g": generation, "ids": list(child_ids)}
    where = "WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))"
    for r in await conn.execute(
        text(
            "SELECT assignment_id, child_id, worker_id, started_on, ended_on "
            f"FROM indicators.assignments {where}"
        ),
        params,
    ):
        out[str(r.child_id)].assignments.append(
            casework.Assignment(
                str(r.assignment_id), str(r.child_id), str(r.worker_id), r.started_on, r.ended_on
            )
        )
    for r in await conn.execute(
        text(f"SELECT event_id, child_id, on_day, at, overdue FROM indicators.visit_flags {where}"),
        params,
    ):
        out[str(r.child_id)].flags.append(
            casework.VisitFlag(str(r.event_id), str(r.child_id), r.on_day, r.at, r.overdue)
        )
    for r in await conn.execute(
        text(f"SELECT event_id, child_id, on_day FROM indicators.reintegrations {where}"), params
    ):
        out[str(r.child_id)].reintegrations.append(
            casework.Reintegration(str(r.event_id), str(r.child_id), r.on_day)
        )
    for r in await conn.execute(
        text(f"SELECT visit_id, child_id, on_day, months FROM indicators.followups {where}"),
        params,
    ):
        out[str(r.child_id)].followups.append(
            casework.Followup(str(r.visit_id), str(r.child_id), r.on_day, tuple(r.months))
        )
    return out


async def casework_children(
    conn: AsyncConnection, generation: int, child_ids: Sequence[str]
) -> set[str]:
    """Those of some children that casework has told of."""
    if not child_ids:
        return set()
    rows = await conn.execute(
        text(
            """
            SELECT child_id FROM indicators.assignments
             WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))
            UNION
            SELECT child_id FROM indicators.visit_flags
             WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))
            UNION
            SELECT child_id FROM indicators.reintegrations
             WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))
            UNION
            SELECT child_id FROM indicators.followups
             WHERE generation = :g AND child_id = ANY(CAST(:ids AS uuid[]))
            """
        ),
        {"g": generation, "ids": list(child_ids)},
    )
    return {str(r.child_id) for r in rows}
