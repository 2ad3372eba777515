"""SQL of what the indicators count: child and provider versions, and the aggregate cells
they add up to."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.store import driver_connection
from services.indicators import catalogue, dates, stocks
from services.indicators.models import cells, child_versions


async def insert_child_versions(
    conn: AsyncConnection, generation: int, versions: Sequence[stocks.ChildVersion]
) -> set[tuple[str, int]]:
    """Record child versions; return (child, version) of those not known before."""
    if not versions:
        return set()
    rows = await conn.execute(
        text(
            """
            INSERT INTO indicators.child_versions
                   (generation, child_id, version, effective_month, commune, sex, birth_month,
                    status, risk, vulnerabilities, care_setting)
            SELECT :g, c, v, e, m, s, b, st, r,
                   COALESCE(string_to_array(NULLIF(vu, ''), ','), '{}'), cs
            FROM unnest(CAST(:c AS uuid[]), CAST(:v AS int[]), CAST(:e AS int[]),
                        CAST(:m AS text[]), CAST(:s AS text[]), CAST(:b AS int[]),
                        CAST(:st AS text[]), CAST(:r AS text[]), CAST(:vu AS text[]),
                        CAST(:cs AS text[]))
                 AS d(c, v, e, m, s, b, st, r, vu, cs)
            ON CONFLICT DO NOTHING
            RETURNING child_id, version
            """
        ),
        {
            "g": generation,
            "c": [x.child_id for x in versions],
            "v": [x.version for x in versions],
            "e": [x.effective for x in versions],
            "m": [x.state.commune for x in versions],
            "s": [x.state.sex for x in versions],
            "b": [x.state.birth_month for x in versions],
            "st": [x.state.status for x in versions],
            "r": [x.state.risk for x in versions],
            "vu": [",".join(x.state.vulnerabilities) for x in versions],
            "cs": [x.state.care_setting for x in versions],
        },
    )
    return {(str(r.child_id), r.version) for r in rows}


async def child_histories(
    conn: AsyncConnection, generation: int, child_ids: Sequence[str]
) -> dict[str, list[stocks.ChildVersion]]:
    """Every known version of each of some children (those with none are absent)."""
    rows = await conn.execute(
        select(child_versions).where(
            child_versions.c.generation == generation,
            child_versions.c.child_id.in_([uuid.UUID(c) for c in child_ids]),
        )
    )
    out: dict[str, list[stocks.ChildVersion]] = {}
    for r in rows:
        version = _child_version(r)
        out.setdefault(version.child_id, []).append(version)
    return out


def _child_version(r: Any) -> stocks.ChildVersion:
    return stocks.ChildVersion(
        child_id=str(r.child_id),
        version=r.version,
        effective=r.effective_month,
        state=stocks.ChildState(
            commune=r.commune,
            sex=r.sex,
            birth_month=r.birth_month,
            status=r.status,
            risk=r.risk,
            vulnerabilities=tuple(r.vulnerabilities),
            care_setting=r.care_setting,
        ),
    )


async def first_child_month(conn: AsyncConnection, generation: int) -> int | None:
    """The earliest month from which any child version holds."""
    value = await conn.scalar(
        select(func.min(child_versions.c.effective_month)).where(
            child_versions.c.generation == generation
        )
    )
    return int(value) if value is not None else None


async def insert_provider_versions(
    conn: AsyncConnection, generation: int, versions: Sequence[stocks.ProviderVersion]
) -> None:
    """Record provider versions (a version seen before is left as it is)."""
    if not versions:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.provider_versions
                   (generation, provider_id, version, effective_month, active, service_types,
                    areas)
            SELECT :g, p, v, e, a, COALESCE(string_to_array(NULLIF(t, ''), ','), '{}'),
                   COALESCE(string_to_array(NULLIF(ar, ''), ','), '{}')
            FROM unnest(CAST(:p AS uuid[]), CAST(:v AS int[]), CAST(:e AS int[]),
                        CAST(:a AS bool[]), CAST(:t AS text[]), CAST(:ar AS text[]))
                 AS d(p, v, e, a, t, ar)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "g": generation,
            "p": [x.provider_id for x in versions],
            "v": [x.version for x in versions],
            "e": [x.effective for x in versions],
            "a": [x.active for x in versions],
            "t": [",".join(x.service_types) for x in versions],
            "ar": [",".join(x.areas) for x in versions],
        },
    )


async def providers_at(
    conn: AsyncConnection, generation: int, month: int
) -> tuple[list[stocks.ProviderVersion], datetime | None]:
    """Each provider's version in force at the end of a month, and the newest change time."""
    rows = (
        await conn.execute(
            text(
                """
                SELECT DISTINCT ON (provider_id)
                       provider_id, version, effective_month, active, service_types, areas,
                       max(recorded_at) OVER () AS last_change
                FROM indicators.provider_versions
                WHERE generation = :g AND effective_month <= :m
                ORDER BY provider_id, version DESC
                """
            ),
            {"g": generation, "m": month},
        )
    ).all()
    versions = [
        stocks.ProviderVersion(
            provider_id=str(r.provider_id),
            version=r.version,
            effective=r.effective_month,
            active=r.active,
            service_types=tuple(r.service_types),
            areas=tuple(r.areas),
        )
        for r in rows
    ]
    return versions, (rows[0].last_change if rows else None)


async def add_to_cells(
    conn: AsyncConnection, generation: int, deltas: Counter[catalogue.CellKey]
) -> None:
    """Add deltas to cells in one statement, in key order (so writers never deadlock)."""
    keys = sorted(k for k, v in deltas.items() if v)
    if not keys:
        return
    await conn.execute(
        text(
            """
            INSERT INTO indicators.cells
                   (generation, indicator, period, commune, combo, value, updated_at)
            SELECT :g, i, p, c, k, v, now()
            FROM unnest(CAST(:i AS text[]), CAST(:p AS text[]), CAST(:c AS text[]),
                        CAST(:k AS text[]), CAST(:v AS bigint[])) AS d(i, p, c, k, v)
            ORDER BY i, p, c, k
            ON CONFLICT (generation, indicator, period, commune, combo)
            DO UPDATE SET value = cells.value + excluded.value, updated_at = now()
            """
        ),
        {
            "g": generation,
            "i": [k[0] for k in keys],
            "p": [k[1] for k in keys],
            "c": [k[2] for k in keys],
            "k": [k[3] for k in keys],
            "v": [deltas[k] for k in keys],
        },
    )


_BAND_SQL = """CASE WHEN :m - birth_month < 60 THEN 'Y0_4'
                    WHEN :m - birth_month < 120 THEN 'Y5_9'
                    WHEN :m - birth_month < 180 THEN 'Y10_14'
                    ELSE 'Y15_17' END"""


async def materialise_month(conn: AsyncConnection, generation: int, month: int) -> None:
    """Compute a month's stock cells from the child versions in force at its end.

    The same rule as stocks.stock_contributions, as one GROUP BY (run once a month, and by a
    rebuild for every month).
    """
    period = dates.month_code(month)
    await conn.execute(
        delete(cells).where(
            cells.c.generation == generation,
            cells.c.period == period,
            cells.c.indicator.in_(catalogue.STOCKS),
        )
    )
    await conn.execute(
        text(
            f"""
            WITH st AS (
                SELECT DISTINCT ON (child_id)
                       commune, sex, birth_month, status, risk, vulnerabilities,
                       care_setting
                FROM indicators.child_versions
                WHERE generation = :g AND effective_month <= :m
                ORDER BY child_id, version DESC
            ), o AS (
                SELECT commune, sex || '_' || {_BAND_SQL} AS combo, risk, vulnerabilities,
                       care_setting
                FROM st WHERE status = 'open'
            )
            INSERT INTO indicators.cells
                   (generation, indicator, period, commune, combo, value, updated_at)
            SELECT :g, 'CP_CASE_OPEN', :p, commune, combo, count(*), now()
              FROM o GROUP BY commune, combo
            UNION ALL
            SELECT :g, 'CP_CASE_HIGH_RISK', :p, commune, combo, count(*), now()
              FROM o WHERE risk = 'high' GROUP BY commune, combo
            UNION ALL
            SELECT :g, 'CP_CHILD_VULN', :p, commune, v, count(*), now()
              FROM o, unnest(o.vulnerabilities) AS v GROUP BY commune, v
            UNION ALL
            SELECT :g, 'CP_CHILD_RESIDENTIAL', :p, commune, combo, count(*), now()
              FROM o WHERE care_setting = '{stocks.RESIDENTIAL}' GROUP BY commune, combo
            """
        ),
        {"g": generation, "m": month, "p": period},
    )


def minimal_prefixes(prefixes: Iterable[str]) -> list[str]:
    """The prefixes without those another one already covers."""
    out: list[str] = []
    for p in sorted(set(prefixes), key=lambda x: (len(x), x)):
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return out


_CELLS_SQL = """
    SELECT indicator, period, commune, combo, value, updated_at
    FROM indicators.cells
    WHERE generation = $1 AND indicator = ANY($2::text[]) AND period = ANY($3::text[])
"""
_CELLS_UNDER_SQL = _CELLS_SQL + " AND commune LIKE ANY($4::text[])"


async def read_cells(
    conn: AsyncConnection,
    generation: int,
    indicators: Sequence[str],
    periods: Sequence[str],
    prefixes: Iterable[str],
) -> list[Any]:
    """Cells of some indicators and periods in communes under the prefixes ("" = all).

    Records of (indicator, period, commune, combo, value, updated_at), read in one statement
    on the driver connection (inside `conn`'s transaction), as rounding.publish_rows takes
    them.
    """
    pg = await driver_connection(conn)
    minimal = minimal_prefixes(prefixes)
    if "" in minimal:
        rows: list[Any] = await pg.fetch(_CELLS_SQL, generation, list(indicators), list(periods))
    else:
        like = [f"{p}%" for p in minimal]
        rows = await pg.fetch(_CELLS_UNDER_SQL, generation, list(indicators), list(periods), like)
    return rows


async def nonzero_cells(conn: AsyncConnection, generation: int) -> dict[catalogue.CellKey, int]:
    """Every non-zero cell of a generation (for comparing a rebuild with the live one)."""
    rows = await conn.execute(
        select(
            cells.c.indicator, cells.c.period, cells.c.commune, cells.c.combo, cells.c.value
        ).where(cells.c.generation == generation, cells.c.value != 0)
    )
    return {(r.indicator, r.period, r.commune, r.combo): int(r.value) for r in rows}
