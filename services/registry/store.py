"""Every SQL statement of the registry."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.http import Page
from services.registry import domain
from services.registry.models import (
    audit_head,
    audit_log,
    case_seq,
    child_history,
    children,
    external_ids,
    referral_access,
)

Child = RowMapping


# ---------------------------------------------------------------- access


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """SQL form of Principal.sees for children (SPEC §3)."""
    clauses: list[ColumnElement[bool]] = []
    prefixes = principal.area_prefixes()
    if prefixes is not None:
        clauses.append(or_(*[children.c.place_code.startswith(p) for p in prefixes]))
    if principal.is_partner:
        shared = select(referral_access.c.child_id).where(
            referral_access.c.org == principal.org, referral_access.c.active
        )
        clauses.append(or_(children.c.owner_org == principal.org, children.c.id.in_(shared)))
    return and_(*clauses) if clauses else and_(True)


# ---------------------------------------------------------------- case numbers


async def next_case_numbers(conn: AsyncConnection, commune_codes: Sequence[str]) -> list[str]:
    """Readable, unique case numbers `<commune>-<seq>` from one lock-free sequence."""
    result = await conn.execute(
        select(case_seq.next_value()).select_from(func.generate_series(1, len(commune_codes)))
    )
    return [f"{code}-{n:07d}" for code, n in zip(commune_codes, result.scalars(), strict=True)]


# ---------------------------------------------------------------- external ids


async def claim_external_ids(
    conn: AsyncConnection, org: str, child_id: uuid.UUID, ids: Sequence[dict[str, str]]
) -> uuid.UUID | None:
    """Claim an organisation's external ids for a new child; the existing child if taken."""
    if not ids:
        return None
    claimed = await conn.execute(
        insert(external_ids)
        .values(
            [
                {"org": org, "system": i["system"], "value": i["value"], "child_id": child_id}
                for i in ids
            ]
        )
        .on_conflict_do_nothing()
        .returning(external_ids.c.system)
    )
    if len(claimed.all()) == len(ids):
        return None
    keys = [(i["system"], i["value"]) for i in ids]
    existing = await conn.scalar(
        select(external_ids.c.child_id).where(
            external_ids.c.org == org,
            tuple_(external_ids.c.system, external_ids.c.value).in_(keys),
            external_ids.c.child_id != child_id,
        )
    )
    return existing


# ---------------------------------------------------------------- children


async def insert_children(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[Child]:
    """Insert children; return them as stored."""
    result = await conn.execute(insert(children).returning(*children.c), list(rows))
    return list(result.mappings().all())


async def get_child(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Child | None:
    """One child visible to the principal (None when absent or not visible)."""
    query = select(children).where(children.c.id == child_id, visible_to(principal))
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def get_children(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[Child]:
    """Children by id (no access check: the caller already had them)."""
    result = await conn.execute(select(children).where(children.c.id.in_(ids)))
    return list(result.mappings().all())


@dataclass(frozen=True)
class ChildFilter:
    commune_code: str | None = None
    status: str | None = None
    risk_level: str | None = None
    vulnerability: str | None = None
    q: str | None = None


async def list_children(
    conn: AsyncConnection, principal: Principal, flt: ChildFilter, page: Page
) -> list[Child]:
    """Visible children in (updated_at, id) order, one more than the page to tell if more follow."""
    c = children.c
    query = select(children).where(visible_to(principal))
    if flt.commune_code:
        query = query.where(c.commune_code == flt.commune_code)
    if flt.status:
        query = query.where(c.status == flt.status)
    if flt.risk_level:
        query = query.where(c.risk_level == flt.risk_level)
    if flt.vulnerability:
        query = query.where(c.vulnerabilities.contains([flt.vulnerability]))
    if flt.q:
        query = query.where(c.name_search.like(domain.like_pattern(flt.q), escape="\\"))
    if page.updated_since is not None:
        query = query.where(c.updated_at >= page.updated_since)
    if page.after is not None:
        at, last_id = page.after
        query = query.where(tuple_(c.updated_at, c.id) > tuple_(at, last_id))
    query = query.order_by(c.updated_at, c.id).limit(page.limit + 1)
    return list((await conn.execute(query)).mappings().all())


async def update_child(
    conn: AsyncConnection, child_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Child:
    """Write new values and bump the version (the row is already locked by the caller)."""
    result = await conn.execute(
        update(children)
        .where(children.c.id == child_id, children.c.version == version)
        .values(**values, version=version + 1, updated_at=func.now())
        .returning(*children.c)
    )
    return result.mappings().one()


async def duplicate_candidates(
    conn: AsyncConnection, child: dict[str, Any] | Child, principal: Principal
) -> list[Child]:
    """Children of the same sex and commune born within a year, visible to the principal."""
    born: date = child["birth_date"]
    c = children.c
    query = select(children).where(
        c.commune_code == child["commune_code"],
        c.sex == child["sex"],
        c.birth_date.between(born - timedelta(days=366), born + timedelta(days=366)),
        visible_to(principal),
    )
    if child.get("id") is not None:
        query = query.where(c.id != child["id"])
    return list((await conn.execute(query.limit(200))).mappings().all())


# ---------------------------------------------------------------- history


async def add_history(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Record changes."""
    if rows:
        await conn.execute(insert(child_history), list(rows))


async def list_history(conn: AsyncConnection, child_id: uuid.UUID, page: Page) -> list[RowMapping]:
    h = child_history.c
    query = select(child_history).where(h.child_id == child_id)
    if page.updated_since is not None:
        query = query.where(h.at >= page.updated_since)
    if page.after is not None:
        query = query.where(h.id > int(page.after[0]))
    return list((await conn.execute(query.order_by(h.id).limit(page.limit + 1))).mappings().all())


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
    if page.updated_since is not None:
        query = query.where(a.at >= page.updated_since)
    if page.after is not None:
        query = query.where(a.seq > int(page.after[0]))
    return list((await conn.execute(query.order_by(a.seq).limit(page.limit + 1))).mappings().all())


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
    rows = (
        (
            await conn.execute(
                select(audit_log)
                .where(audit_log.c.chain_seq.is_(None))
                .order_by(audit_log.c.seq)
                .limit(batch)
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        return 0
    prev, chain_seq = bytes(head["hash"]), int(head["chain_seq"])
    sealed: list[dict[str, Any]] = []
    for row in rows:
        chain_seq += 1
        digest = domain.audit_link(prev, chain_seq, row)
        sealed.append({"s": row["seq"], "c": chain_seq, "p": prev, "h": digest})
        prev = digest
    from sqlalchemy import bindparam

    await conn.execute(
        update(audit_log)
        .where(audit_log.c.seq == bindparam("s"))
        .values(chain_seq=bindparam("c"), prev_hash=bindparam("p"), hash=bindparam("h")),
        sealed,
    )
    await conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(chain_seq=chain_seq, hash=prev)
    )
    return len(sealed)


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
    stream = await conn.stream(
        select(audit_log).where(audit_log.c.chain_seq.is_not(None)).order_by(audit_log.c.chain_seq)
    )
    async for row in stream.mappings():
        checked += 1
        if row["chain_seq"] != expected:
            return AuditVerdict(
                False, checked, unsealed, head_seq,
                f"entry missing before chain position {row['chain_seq']} (expected {expected})",
                row["seq"],
            )  # fmt: skip
        if bytes(row["prev_hash"]) != prev:
            return AuditVerdict(
                False, checked, unsealed, head_seq,
                f"entry {row['seq']} does not follow its predecessor (reordered or changed)",
                row["seq"],
            )  # fmt: skip
        digest = domain.audit_link(prev, expected, row)
        if bytes(row["hash"]) != digest:
            return AuditVerdict(
                False, checked, unsealed, head_seq, f"entry {row['seq']} was altered", row["seq"]
            )
        prev, expected = digest, expected + 1
    if expected - 1 != head_seq or prev != head_hash:
        return AuditVerdict(
            False, checked, unsealed, head_seq,
            f"chain ends at {expected - 1} but the head says {head_seq}: entries removed",
            None,
        )  # fmt: skip
    return AuditVerdict(True, checked, unsealed, head_seq)


# ---------------------------------------------------------------- access through referrals


async def apply_referral(
    conn: AsyncConnection, referral_id: str, child_id: str, org: str, active: bool, version: int
) -> None:
    """Record whether a referral lets its provider's organisation read the child (newest wins)."""
    stmt = insert(referral_access).values(
        referral_id=uuid.UUID(referral_id),
        child_id=uuid.UUID(child_id),
        org=org,
        active=active,
        version=version,
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[referral_access.c.referral_id],
            set_={"active": stmt.excluded.active, "version": stmt.excluded.version},
            where=referral_access.c.version < stmt.excluded.version,
        )
    )
