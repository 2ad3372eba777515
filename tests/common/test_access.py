"""The access rule of libs.common.access: the Python predicate, the SQLAlchemy builder and
the SQL text every service uses say the same, on a real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import Column, MetaData, String, Table, Uuid, select
from sqlalchemy.dialects import postgresql

from libs.common import access
from libs.common.auth import Principal
from libs.common.errors import Forbidden

SCHEMA = f"access_{uuid.uuid4().hex[:8]}"
NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)


def principal(org: str, org_type: str, *areas: str) -> Principal:
    return Principal(f"sub-{org}", org, org_type, frozenset(), tuple(areas))


# ---------------------------------------------------------------- in Python


def test_an_active_referral_is_accepted_or_completed_less_than_30_days_ago() -> None:
    assert access.share_active("accepted", None, NOW)
    assert access.share_active("completed", NOW - timedelta(days=29, hours=23), NOW)
    assert not access.share_active("completed", NOW - timedelta(days=30), NOW)
    assert not access.share_active("completed", None, NOW)
    for status in ("pending", "declined", "cancelled"):
        assert not access.share_active(status, None, NOW)


def test_a_partner_reads_its_own_children_and_those_of_its_active_referrals() -> None:
    clinic = principal("clinic", "partner", "1201")
    at = {"commune": "120101", "village": "12010101"}
    assert access.sees_child(clinic, **at, owner_org="clinic")
    assert not access.sees_child(clinic, **at, owner_org="ngo")
    shared = [access.Share("clinic", "accepted")]
    assert access.sees_child(clinic, **at, owner_org="ngo", shares=shared)
    old = [access.Share("clinic", "completed", NOW - timedelta(days=31))]
    assert not access.sees_child(clinic, **at, owner_org="ngo", shares=old, now=NOW)
    theirs = [access.Share("other", "accepted")]
    assert not access.sees_child(clinic, **at, owner_org="ngo", shares=theirs)
    far = principal("clinic", "partner", "1202")
    assert not access.sees_child(far, **at, owner_org="clinic", shares=shared)


def test_only_the_registering_organisation_or_government_changes_a_child() -> None:
    assert access.may_change_child(principal("ngo", "partner", "12"), "ngo")
    assert access.may_change_child(principal("moswvy", "government", "12"), "ngo")
    with pytest.raises(Forbidden):
        access.require_change(principal("clinic", "partner", "12"), "ngo")


def test_the_listed_commune_owns_an_anomalous_village() -> None:
    # 02140408 is listed under 021405, though its code names 021404
    listed = principal("ccwc", "government", "021405")
    named = principal("ccwc", "government", "021404")
    assert listed.covers("02140408")
    assert not named.covers("02140408")
    assert listed.covers_place("021405", "02140408")
    assert not named.covers_place("021405", "02140408")
    assert principal("x", "government", "0214").covers("02140408")
    village = principal("x", "government", "02140408")
    assert village.covers_place("021405", "02140408")
    assert not village.covers_place("021405", None)  # a village area: its village only
    # 02140401 is listed under both: alone it means 021404; a record may name 021405
    assert named.covers("02140401")
    assert not listed.covers("02140401")
    assert listed.covers_place("021405", "02140401")


# ---------------------------------------------------------------- in SQL, against Python

PLACES = [
    ("120101", "12010101"),
    ("120101", None),
    ("120109", "12010901"),
    ("021405", "02140408"),  # listed under 021405, code names 021404
    ("021405", "02140401"),  # a code listed under two communes, placed in 021405
    ("021404", "02140401"),
]
PRINCIPALS = [
    principal("ngo", "partner", "120101"),
    principal("clinic", "partner", "1201"),
    principal("clinic", "partner", "KH"),
    principal("ngo", "partner", "12010101"),
    principal("moswvy", "government", "021405"),
    principal("moswvy", "government", "021404"),
    principal("moswvy", "government", "02140401"),
    principal("moswvy", "government", "0214", "120109"),
    principal("moswvy", "government", "KH"),
]
SHARES = [
    [],
    [access.Share("clinic", "accepted")],
    [access.Share("clinic", "completed", NOW - timedelta(days=3))],
    [access.Share("clinic", "completed", NOW - timedelta(days=45))],
    [access.Share("clinic", "declined"), access.Share("clinic", "cancelled")],
    [access.Share("other", "accepted")],
]


@pytest.fixture
async def pg(pg_url: str):  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(pg_url)
    await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    try:
        yield conn
    finally:
        await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        await conn.close()


async def test_the_sql_forms_agree_with_the_predicate(pg: asyncpg.Connection) -> None:
    metadata = MetaData()
    children = Table(
        "children",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("commune_code", String(6)),
        Column("village_code", String(8)),
        Column("owner_org", String(100)),
        schema=SCHEMA,
    )
    shares = access.referral_shares_table(metadata, SCHEMA)
    await pg.execute(
        f"CREATE TABLE {SCHEMA}.children (id uuid PRIMARY KEY, commune_code text,"
        " village_code text, owner_org text)"
    )
    await pg.execute(
        f"CREATE TABLE {SCHEMA}.referral_shares (referral_id uuid PRIMARY KEY, child_id uuid,"
        " org text, status text, completed_at timestamptz, version int)"
    )
    # The database's clock decides at read time: completion times relative to its now().
    db_now: datetime = await pg.fetchval("SELECT now()")
    expected: dict[tuple[int, uuid.UUID], bool] = {}
    cases = list(itertools.product(PLACES, ("ngo", "clinic"), SHARES))
    for (commune, village), owner, shared in cases:
        child_id = uuid.uuid4()
        await pg.execute(
            f"INSERT INTO {SCHEMA}.children VALUES ($1, $2, $3, $4)",
            child_id,
            commune,
            village,
            owner,
        )
        for share in shared:
            completed = None if share.completed_at is None else db_now - (NOW - share.completed_at)
            await pg.execute(
                f"INSERT INTO {SCHEMA}.referral_shares VALUES ($1, $2, $3, $4, $5, 1)",
                uuid.uuid4(),
                child_id,
                share.org,
                share.status,
                completed,
            )
        for n, p in enumerate(PRINCIPALS):
            expected[(n, child_id)] = access.sees_child(
                p, commune=commune, village=village, owner_org=owner, shares=shared, now=NOW
            )
    c = children.c
    text_sql = f"SELECT id FROM {SCHEMA}.children WHERE " + access.child_visible_text(
        "$1", "$2", shares=f"{SCHEMA}.referral_shares"
    )
    for n, p in enumerate(PRINCIPALS):
        want = {cid for (m, cid), seen in expected.items() if m == n and seen}
        built = select(c.id).where(
            access.child_visible_sql(
                p,
                commune=c.commune_code,
                village=c.village_code,
                owner=c.owner_org,
                child_id=c.id,
                shares=access.shares_of(shares),
            )
        )
        compiled = built.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
        by_builder = {r["id"] for r in await pg.fetch(str(compiled))}
        by_text = {r["id"] for r in await pg.fetch(text_sql, *access.visibility_args(p))}
        assert by_builder == want, p
        assert by_text == want, p
    assert any(expected.values())
    assert not all(expected.values())
