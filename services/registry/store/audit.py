"""The trail of each child: its history of changes, and the audit log of every read and
write, sealed into a hash chain and verified against it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.http import Page
from libs.common.store import driver_connection, read_page
from services.registry import domain
from services.registry.models import audit_head, audit_log, child_history

# ---------------------------------------------------------------- history


async def list_history(conn: AsyncConnection, child_id: uuid.UUID, page: Page) -> list[RowMapping]:
    h = child_history.c
    query = select(child_history).where(h.child_id == child_id)
    return await read_page(conn, query, page, key=(h.id,), changed_at=h.at)


# ---------------------------------------------------------------- audit


async def add_audit(
    conn: AsyncConnection,
    principal: Principal,
    action: str,
    child_ids: Sequence[uuid.UUID],
    request_id: str,
) -> None:
    """Record reads or writes of children, in the caller's transaction."""
    if not child_ids:
        return
    await conn.execute(
        insert(audit_log),
        [
            {
                "actor_sub": principal.sub,
                "actor_org": principal.org,
                "action": action,
                "child_id": cid,
                "request_id": request_id,
            }
            for cid in child_ids
        ],
    )


async def list_audit(conn: AsyncConnection, child_id: uuid.UUID, page: Page) -> list[RowMapping]:
    a = audit_log.c
    query = select(audit_log).where(a.child_id == child_id)
    return await read_page(conn, query, page, key=(a.seq,), changed_at=a.at)


async def seal_audit(conn: AsyncConnection, batch: int = 5000) -> int:
    """Chain unsealed entries onto the head, in insertion order; return how many were sealed.

    The head row lock makes one sealer run at a time across replicas.
    """
    head = (await conn.execute(select(audit_head).with_for_update())).mappings().first()
    if head is None:
        await conn.execute(
            insert(audit_head)
            .values(id=1, chain_seq=0, hash=domain.GENESIS)
            .on_conflict_do_nothing()
        )
        head = (await conn.execute(select(audit_head).with_for_update())).mappings().one()
    pg = await driver_connection(conn)
    rows = await pg.fetch(
        "SELECT seq, at, actor_sub, actor_org, action, child_id, request_id"
        " FROM registry.audit_log WHERE chain_seq IS NULL ORDER BY seq LIMIT $1",
        batch,
    )
    if not rows:
        return 0
    prev, chain_seq = bytes(head["hash"]), int(head["chain_seq"])
    seqs, positions, prevs, hashes = [], [], [], []
    for row in rows:
        chain_seq += 1
        digest = domain.audit_link(prev, chain_seq, row)
        seqs.append(row["seq"])
        positions.append(chain_seq)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    await pg.execute(
        "UPDATE registry.audit_log a SET chain_seq = u.c, prev_hash = u.p, hash = u.h"
        " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(s, c, p, h)"
        " WHERE a.seq = u.s",
        seqs,
        positions,
        prevs,
        hashes,
    )
    await conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(chain_seq=chain_seq, hash=prev)
    )
    return len(seqs)


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    checked: int
    unsealed: int
    head_chain_seq: int
    problem: str | None = None
    bad_seq: int | None = None


async def verify_audit(conn: AsyncConnection) -> AuditVerdict:
    """Walk the chain and recompute every link; name the first entry that does not hold."""
    head = (await conn.execute(select(audit_head))).mappings().first()
    head_seq = int(head["chain_seq"]) if head else 0
    head_hash = bytes(head["hash"]) if head else domain.GENESIS
    unsealed = int(
        await conn.scalar(
            select(func.count()).select_from(audit_log).where(audit_log.c.chain_seq.is_(None))
        )
        or 0
    )
    prev, expected, checked = domain.GENESIS, 1, 0

    def broken(problem: str, bad_seq: int | None) -> AuditVerdict:
        return AuditVerdict(False, checked, unsealed, head_seq, problem, bad_seq)

    stream = await conn.stream(
        select(audit_log).where(audit_log.c.chain_seq.is_not(None)).order_by(audit_log.c.chain_seq)
    )
    async for row in stream.mappings():
        checked += 1
        if row["chain_seq"] != expected:
            return broken(
                f"entry missing before chain position {row['chain_seq']} (expected {expected})",
                row["seq"],
            )
        if bytes(row["prev_hash"]) != prev:
            return broken(
                f"entry {row['seq']} does not follow its predecessor (reordered or changed)",
                row["seq"],
            )
        digest = domain.audit_link(prev, expected, row)
        if bytes(row["hash"]) != digest:
            return broken(f"entry {row['seq']} was altered", row["seq"])
        prev, expected = digest, expected + 1
    if expected - 1 != head_seq or prev != head_hash:
        return broken(
            f"chain ends at {expected - 1} but the head says {head_seq}: entries removed", None
        )
    return AuditVerdict(True, checked, unsealed, head_seq)
