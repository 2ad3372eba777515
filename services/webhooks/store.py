"""Every SQL statement of the webhooks service.

Deliveries are claimed by the worker of any replica with `FOR UPDATE SKIP LOCKED` in a
short transaction that pushes their next attempt a lease ahead (so no other replica takes
them while the HTTP call runs, and a replica killed mid-call leaves them due again once the
lease ends); the outcome is written in another short transaction. No transaction is held
across an HTTP call.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.access import Share
from libs.common.http import Page
from libs.common.store import (
    driver_connection,
    read_page,
    upsert_newest,
    versioned_update,
    where_given,
)
from services.webhooks.domain import Result, Verdict
from services.webhooks.models import (
    attempts,
    children,
    deliveries,
    endpoints,
    grants,
    referral_shares,
    referrals,
)

Row = RowMapping

# How many attempts of a delivery its answer shows (the newest).
ATTEMPTS_SHOWN = 100

# ---------------------------------------------------------------- endpoints


async def insert_endpoint(conn: AsyncConnection, row: dict[str, Any]) -> Row:
    """A new endpoint, as stored."""
    return (
        (await conn.execute(insert(endpoints).values(**row).returning(*endpoints.c)))
        .mappings()
        .one()
    )


async def get_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, org: str, *, lock: bool = False
) -> Row | None:
    """The organisation's endpoint (None for another organisation's)."""
    e = endpoints.c
    query = select(endpoints).where(e.id == endpoint_id, e.org == org)
    if lock:  # FOR NO KEY UPDATE: deliveries referring to it may still be inserted
        query = query.with_for_update(key_share=True)
    return (await conn.execute(query)).mappings().first()


async def list_endpoints(conn: AsyncConnection, org: str, page: Page) -> list[Row]:
    """The organisation's endpoints, oldest change first, one more than the page."""
    e = endpoints.c
    query = select(endpoints).where(e.org == org)
    return await read_page(conn, query, page, key=(e.updated_at, e.id), changed_at=e.updated_at)


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row:
    """New values of an endpoint the caller holds locked at `version`."""
    return (
        (await conn.execute(versioned_update(endpoints, endpoint_id, version, values)))
        .mappings()
        .one()
    )


async def delete_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint, its deliveries and their attempts."""
    await conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))


async def resume_deliveries(conn: AsyncConnection, endpoint_id: uuid.UUID) -> None:
    """An endpoint enabled again: its waiting deliveries are due now, in a new round."""
    d = deliveries.c
    await conn.execute(
        update(deliveries)
        .where(d.endpoint_id == endpoint_id, d.status == "pending")
        .values(next_attempt_at=func.now(), round_started_at=func.now(), updated_at=func.now())
    )


async def subscribed_endpoints(conn: AsyncConnection, types: Sequence[str]) -> list[Row]:
    """The enabled endpoints subscribed to any of the event types."""
    e = endpoints.c
    query = select(endpoints).where(e.enabled.is_(True), e.event_types.overlap(list(types)))
    return list((await conn.execute(query.order_by(e.id))).mappings().all())


# ---------------------------------------------------------------- projections


async def upsert_children(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Children's newest versions (id, commune_code, village_code, owner_org, status)."""
    await upsert_newest(conn, children, rows)


async def upsert_referrals(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Referrals' newest versions."""
    await upsert_newest(conn, referrals, rows)


async def upsert_grants(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Grants' newest versions."""
    await upsert_newest(conn, grants, rows)


async def children_by_id(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Row]:
    wanted = sorted(set(ids), key=str)
    if not wanted:
        return {}
    rows = (await conn.execute(select(children).where(children.c.id.in_(wanted)))).mappings()
    return {r["id"]: r for r in rows}


async def referrals_by_id(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Row]:
    wanted = sorted(set(ids), key=str)
    if not wanted:
        return {}
    rows = (await conn.execute(select(referrals).where(referrals.c.id.in_(wanted)))).mappings()
    return {r["id"]: r for r in rows}


async def grants_by_id(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Row]:
    wanted = sorted(set(ids), key=str)
    if not wanted:
        return {}
    rows = (await conn.execute(select(grants).where(grants.c.id.in_(wanted)))).mappings()
    return {r["id"]: r for r in rows}


async def shares_of(
    conn: AsyncConnection, child_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[Share]]:
    """The referral shares of each child (libs.common.access.Share)."""
    wanted = sorted(set(child_ids), key=str)
    found: dict[uuid.UUID, list[Share]] = defaultdict(list)
    if not wanted:
        return found
    s = referral_shares.c
    rows = await conn.execute(
        select(s.child_id, s.org, s.status, s.completed_at).where(s.child_id.in_(wanted))
    )
    for child_id, org, status, completed_at in rows:
        found[child_id].append(Share(org, status, completed_at))
    return found


# ---------------------------------------------------------------- deliveries


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """New deliveries, in the order given (their `seq`); one already there for the same
    endpoint and event is left as it is. Returns how many were added."""
    if not rows:
        return 0
    query = (
        insert(deliveries)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        .returning(deliveries.c.id)
    )
    return len((await conn.execute(query)).all())


async def get_delivery(
    conn: AsyncConnection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, *, lock: bool = False
) -> Row | None:
    d = deliveries.c
    query = select(deliveries).where(d.id == delivery_id, d.endpoint_id == endpoint_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def list_deliveries(
    conn: AsyncConnection, endpoint_id: uuid.UUID, status: str | None, page: Page
) -> list[Row]:
    """An endpoint's deliveries in the order they were made, one more than the page."""
    d = deliveries.c
    query = where_given(select(deliveries).where(d.endpoint_id == endpoint_id), (d.status, status))
    return await read_page(conn, query, page, key=(d.seq,), changed_at=d.updated_at)


async def attempts_of(
    conn: AsyncConnection, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Row]]:
    """The newest attempts of each delivery (at most ATTEMPTS_SHOWN), oldest first."""
    found: dict[uuid.UUID, list[Row]] = defaultdict(list)
    if not delivery_ids:
        return found
    a = attempts.c
    ranked = (
        select(
            attempts,
            func.row_number().over(partition_by=a.delivery_id, order_by=a.id.desc()).label("n"),
        )
        .where(a.delivery_id.in_(list(delivery_ids)))
        .subquery()
    )
    query = select(ranked).where(ranked.c.n <= ATTEMPTS_SHOWN).order_by(ranked.c.id)
    for row in (await conn.execute(query)).mappings():
        found[row["delivery_id"]].append(row)
    return found


async def retry_delivery(conn: AsyncConnection, delivery_id: uuid.UUID) -> Row:
    """A delivery made due now, in a new round of tries (the caller holds it locked)."""
    d = deliveries.c
    query = (
        update(deliveries)
        .where(d.id == delivery_id)
        .values(
            status="pending",
            next_attempt_at=func.now(),
            round_started_at=func.now(),
            updated_at=func.now(),
        )
        .returning(*deliveries.c)
    )
    return (await conn.execute(query)).mappings().one()


# ---------------------------------------------------------------- the worker's statements

# Due deliveries of enabled endpoints, but none while an earlier delivery about the same
# record to the same endpoint is still pending (ordered by the record's version, then by
# arrival); claimed by pushing their next attempt a lease ahead.
_CLAIM = text(
    """
    WITH due AS (
        SELECT d.id FROM webhooks.deliveries d
        JOIN webhooks.endpoints e ON e.id = d.endpoint_id AND e.enabled
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM webhooks.deliveries p
              WHERE p.endpoint_id = d.endpoint_id AND p.record_id = d.record_id
                AND p.status = 'pending'
                AND (p.record_version, p.seq) < (d.record_version, d.seq))
        ORDER BY d.next_attempt_at, d.seq
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED)
    UPDATE webhooks.deliveries d
    SET next_attempt_at = now() + make_interval(secs => :lease), attempts = d.attempts + 1
    FROM due, webhooks.endpoints e
    WHERE d.id = due.id AND e.id = d.endpoint_id
    RETURNING d.id, d.endpoint_id, d.event_type, d.record_type, d.record_id, d.body,
        d.attempts, d.round_started_at, now() AS claimed_at,
        e.url, e.secret, e.previous_secret, e.previous_until, e.failing_since, e.org,
        e.owner_sub, e.owner_org_type, e.owner_scopes, e.owner_areas
    """
)


async def claim_due(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Up to `limit` due deliveries, each with its endpoint, claimed for `lease_s`."""
    rows = await conn.execute(_CLAIM, {"limit": limit, "lease": lease_s})
    return list(rows.mappings().all())


async def record_outcome(
    conn: AsyncConnection,
    delivery_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    claimed_attempts: int,
    outcome: str,
    result: Result | None,
    verdict: Verdict | None,
    disable_after_s: float,
) -> None:
    """An attempt and what follows it: the endpoint's failing-since, or its disabling, then
    the delivery's new state (only if no one claimed it since). `outcome` is `dropped` for
    a delivery whose record its owner may no longer see (nothing was sent), with no result
    or verdict. The endpoint row is written before the delivery's, the order a PATCH of the
    endpoint takes them in, so the two never wait on each other in a circle."""
    d = deliveries.c
    e = endpoints.c
    if (await conn.execute(select(d.id).where(d.id == delivery_id))).first() is None:
        return  # its endpoint was deleted meanwhile
    if verdict is not None and verdict.status == "delivered":
        await conn.execute(
            update(endpoints)
            .where(e.id == endpoint_id, e.failing_since.is_not(None))
            .values(failing_since=None)
        )
    elif verdict is not None:
        await conn.execute(
            update(endpoints)
            .where(e.id == endpoint_id, e.failing_since.is_(None))
            .values(failing_since=func.now())
        )
        if verdict.disable == "gone":
            await _disable(conn, endpoint_id, "gone")
        elif verdict.disable == "failing":
            since = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, disable_after_s)
            await _disable(conn, endpoint_id, "failing", e.failing_since <= since)
    await conn.execute(
        insert(attempts).values(
            delivery_id=delivery_id,
            outcome=outcome,
            status_code=result.status_code if result else None,
            latency_ms=result.latency_ms if result else None,
            error=result.error if result else ("access" if outcome == "dropped" else None),
        )
    )
    mine = and_(d.id == delivery_id, d.status == "pending", d.attempts == claimed_attempts)
    changes: dict[str, Any] = {"updated_at": func.now()}
    if verdict is None:
        changes["status"] = "dropped"
    else:
        changes["status"] = verdict.status
        if verdict.status == "delivered":
            changes["delivered_at"] = func.now()
        if verdict.next_attempt_at is not None:
            changes["next_attempt_at"] = verdict.next_attempt_at
    await conn.execute(update(deliveries).where(mine).values(**changes))


# A delivered attempt of an endpoint that was not failing when it was claimed (nearly
# every attempt): the attempt and the delivery's new state in one statement, with no
# endpoint row to write. (Were an attempt of the same endpoint to fail meanwhile, its
# failing-since is cleared by the next delivered attempt claimed after it.)
_DELIVERED_SQL = (
    "WITH a AS (INSERT INTO webhooks.delivery_attempts"
    " (delivery_id, outcome, status_code, latency_ms)"
    " SELECT id, 'delivered', $3, $4 FROM webhooks.deliveries WHERE id = $1)"
    " UPDATE webhooks.deliveries SET status = 'delivered', delivered_at = now(),"
    " updated_at = now() WHERE id = $1 AND status = 'pending' AND attempts = $2"
)


async def record_delivered(
    conn: AsyncConnection, delivery_id: uuid.UUID, claimed_attempts: int, result: Result
) -> None:
    """record_outcome of a delivered attempt to an endpoint that was not failing, in one
    statement (nothing when the delivery was deleted with its endpoint meanwhile)."""
    pg = await driver_connection(conn)
    await pg.execute(
        _DELIVERED_SQL, delivery_id, claimed_attempts, result.status_code, result.latency_ms
    )


async def _disable(conn: AsyncConnection, endpoint_id: uuid.UUID, reason: str, *when: Any) -> None:
    e = endpoints.c
    await conn.execute(
        update(endpoints)
        .where(e.id == endpoint_id, e.enabled.is_(True), *when)
        .values(
            enabled=False,
            disabled_reason=reason,
            version=e.version + 1,
            updated_at=func.now(),
        )
    )


# ---------------------------------------------------------------- who consumes

# The session lock under which one replica at a time runs the consumers.
_LEAD = func.hashtextextended("webhooks.consumers", 0)


async def try_lead(conn: AsyncConnection) -> bool:
    """Take the consumers' session lock on this connection, without waiting: True when
    taken (held until the connection closes)."""
    return bool((await conn.execute(select(func.pg_try_advisory_lock(_LEAD)))).scalar())
