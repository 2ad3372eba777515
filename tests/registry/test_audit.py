"""The hash-chained audit log: every read and write recorded, tampering detected."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.registry import store
from tests.registry.conftest import child_body
from tests.support import SigningKeys


async def seal_and_verify(app: FastAPI) -> store.AuditVerdict:
    db = app.state.runtime.db
    async with db.transaction() as conn:
        await store.seal_audit(conn)
    async with db.transaction() as conn:
        return await store.verify_audit(conn)


async def test_reads_and_writes_are_recorded(api: httpx.AsyncClient, keys: SigningKeys) -> None:
    h = keys.headers(sub="worker-1")
    child = (await api.post("/v1/registry/children", json=child_body(), headers=h)).json()
    await api.get(f"/v1/registry/children/{child['id']}", headers=h)
    await api.patch(
        f"/v1/registry/children/{child['id']}",
        json={"risk_level": "high"},
        headers={**h, "If-Match": '"1"'},
    )
    r = await api.get(
        f"/v1/registry/audit?child_id={child['id']}",
        headers=keys.headers(areas=["KH"], scope="admin"),
    )
    assert r.status_code == 200
    entries = r.json()["items"]
    assert [e["action"] for e in entries] == ["create", "read", "updated"]
    assert {e["principal"]["sub"] for e in entries} == {"worker-1"}
    assert all(e["request_id"] for e in entries)


@pytest.mark.parametrize("tamper", ["change", "delete", "reorder"])
async def test_tampering_breaks_the_verifier_and_names_the_row(
    registry_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys, tamper: str
) -> None:
    h = keys.headers()
    for _ in range(3):
        await api.post("/v1/registry/children", json=child_body(), headers=h)
    verdict = await seal_and_verify(registry_app)
    assert verdict.ok, verdict
    db = registry_app.state.runtime.db
    async with db.transaction() as conn:
        # an attacker with database rights switches the append-only guard off first
        await conn.execute(
            text("ALTER TABLE registry.audit_log DISABLE TRIGGER audit_log_append_only")
        )
        seqs = (
            (
                await conn.execute(
                    text("SELECT seq FROM registry.audit_log ORDER BY chain_seq DESC LIMIT 3")
                )
            )
            .scalars()
            .all()
        )
        victim, neighbour = seqs[1], seqs[2]
        if tamper == "change":
            await conn.execute(
                text("UPDATE registry.audit_log SET actor_sub = 'someone-else' WHERE seq = :s"),
                {"s": victim},
            )
        elif tamper == "delete":
            await conn.execute(text("DELETE FROM registry.audit_log WHERE seq = :s"), {"s": victim})
        else:  # swap two neighbouring entries' places in the chain
            swap = "UPDATE registry.audit_log SET chain_seq = :p WHERE seq = :s"
            pos = {
                s: await conn.scalar(
                    text("SELECT chain_seq FROM registry.audit_log WHERE seq = :s"), {"s": s}
                )
                for s in (victim, neighbour)
            }
            await conn.execute(text(swap), {"p": -1, "s": victim})
            await conn.execute(text(swap), {"p": pos[victim], "s": neighbour})
            await conn.execute(text(swap), {"p": pos[neighbour], "s": victim})
        await conn.execute(
            text("ALTER TABLE registry.audit_log ENABLE TRIGGER audit_log_append_only")
        )
    try:
        verdict = await seal_and_verify(registry_app)
        assert not verdict.ok
        assert verdict.problem
        if tamper != "delete":
            assert verdict.bad_seq in (victim, neighbour)
        else:
            assert verdict.bad_seq == seqs[0]  # the entry after the gap
    finally:
        await repair_chain(registry_app)


async def repair_chain(app: FastAPI) -> None:
    """Re-seal from scratch so later tests start from an intact chain."""
    db = app.state.runtime.db
    async with db.transaction() as conn:
        await conn.execute(
            text("ALTER TABLE registry.audit_log DISABLE TRIGGER audit_log_append_only")
        )
        await conn.execute(
            text("UPDATE registry.audit_log SET chain_seq = NULL, prev_hash = NULL, hash = NULL")
        )
        await conn.execute(text("DELETE FROM registry.audit_head"))
        await conn.execute(
            text("ALTER TABLE registry.audit_log ENABLE TRIGGER audit_log_append_only")
        )
    assert (await seal_and_verify(app)).ok


async def test_guard_refuses_changes_to_the_log(
    registry_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    await api.post("/v1/registry/children", json=child_body(), headers=keys.headers())
    await seal_and_verify(registry_app)
    db = registry_app.state.runtime.db
    for statement in (
        "UPDATE registry.audit_log SET actor_sub = 'x'",
        "DELETE FROM registry.audit_log",
    ):
        with pytest.raises(Exception, match="audit entries cannot be"):
            async with db.transaction() as conn:
                await conn.execute(text(statement))
