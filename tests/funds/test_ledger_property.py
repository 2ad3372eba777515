"""Property: whatever sequence of top-ups, requests, approvals, rejections, payments,
cancellations and reversals happens, every answer is what the rules predict, the fund's
balances equal the ledger's sums and the grants' totals, and available never goes below
zero. Then an attacker with database rights alters a ledger row and the verifier names the
fund.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from libs.common.events.bus import EventBus
from services.funds import store
from tests.funds.conftest import People, add_children, fund_body, grant_body
from tests.support import SigningKeys, client

BUDGET, MAX_GRANT, THRESHOLD = 400_000, 250_000, 150_000
CHILDREN = 3
CATEGORIES = ("education_support", "medical_transport", "emergency_disaster")
AMOUNTS = (50_000, 100_000, 150_000, 200_000, 250_000, 300_000)  # 300,000 > max: 422
APPROVERS = ("requester", "approver", "district")
LIVE = ("requested", "approved", "disbursed")

# Grant actions come first (Hypothesis favours the first branch) and are weighted towards
# the steps that move money; top-ups are small, so the fund does run dry at times.
grant_ops = st.tuples(
    st.sampled_from(("approve", "approve", "disburse", "disburse", "reject", "cancel", "reverse")),
    st.integers(0, 10_000),
    st.sampled_from(APPROVERS),
)
operations = st.lists(
    st.one_of(
        grant_ops,
        st.tuples(
            st.just("request"),
            st.integers(0, CHILDREN - 1),
            st.sampled_from(CATEGORIES),
            st.sampled_from(AMOUNTS),
        ),
        grant_ops,
        st.tuples(st.just("top_up"), st.integers(1, 5_000)),
    ),
    min_size=250,
    max_size=400,
)


@dataclass
class ModelGrant:
    id: str
    child: int
    category: str
    amount: int
    status: str = "requested"
    approvals: list[str] = field(default_factory=list)

    @property
    def required(self) -> int:
        return 1 if self.amount <= THRESHOLD else 2


@dataclass
class Model:
    """What the rules say should happen, kept by hand."""

    topped_up: int = 0
    committed: int = 0
    disbursed: int = 0
    grants: list[ModelGrant] = field(default_factory=list)

    @property
    def available(self) -> int:
        return BUDGET + self.topped_up - self.committed - self.disbursed

    def request(self, child: int, category: str, amount: int) -> int:
        if amount > MAX_GRANT:
            return 422
        open_ = {"requested", "approved"}
        if any(
            g.child == child and g.category == category and g.status in open_ for g in self.grants
        ):
            return 409
        return 201

    def approve(self, g: ModelGrant, who: str) -> int:
        if g.status != "requested":
            return 409
        if who == "requester":
            return 403
        if who in g.approvals:
            return 409
        completes = len(g.approvals) + 1 >= g.required
        if completes and g.required == 2 and who != "district":
            return 403
        if completes and self.available < g.amount:
            return 409
        g.approvals.append(who)
        if completes:
            g.status, self.committed = "approved", self.committed + g.amount
        return 200

    def act(self, action: str, g: ModelGrant) -> int:
        moves = {
            ("reject", "requested"): ("rejected", 0, 0),
            ("disburse", "approved"): ("disbursed", -g.amount, g.amount),
            ("cancel", "requested"): ("cancelled", 0, 0),
            ("cancel", "approved"): ("cancelled", -g.amount, 0),
            ("reverse", "disbursed"): ("reversed", 0, -g.amount),
        }
        move = moves.get((action, g.status))
        if move is None:
            return 409
        g.status = move[0]
        self.committed += move[1]
        self.disbursed += move[2]
        return 200


# A few long sequences rather than many short ones; no shrinking, which could take minutes:
# a failure names the step, the operation and the answer instead.
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=operations)
async def test_any_sequence_of_operations_keeps_the_books_straight(
    funds_app: FastAPI, registry_bus: EventBus, keys: SigningKeys, ops: list[tuple]
) -> None:
    people = People(keys, uuid.uuid4().hex[:8])
    # the requester also holds funds:approve, so self-approval meets the maker-checker rule
    both_hats = people.h(
        "requester", areas=["120101"], scope="funds:read funds:request funds:approve"
    )
    hs = {
        "requester": both_hats,
        "approver": people.approver,
        "district": people.district_approver,
    }
    children = await add_children(funds_app, registry_bus, CHILDREN)
    model = Model()
    async with client(funds_app, "funds") as api:
        body = fund_body(
            budget_khr=BUDGET, max_grant_khr=MAX_GRANT, approval_threshold_khr=THRESHOLD
        )
        fund = (await api.post("/v1/funds/funds", json=body, headers=people.manager)).json()
        for step, op in enumerate(ops):
            if op[0] == "top_up":
                r = await api.post(
                    f"/v1/funds/funds/{fund['id']}/top-ups",
                    json={"amount_khr": op[1], "reference": f"T-{step}"},
                    headers=people.manager,
                )
                expected = 200
                model.topped_up += op[1]
            elif op[0] == "request":
                _, child, category, amount = op
                extra = {"shock": "storm"} if category == "emergency_disaster" else {}
                r = await api.post(
                    "/v1/funds/grants",
                    json=grant_body(
                        fund["id"], children[child], category=category, amount_khr=amount, **extra
                    ),
                    headers=people.requester,
                )
                expected = model.request(child, category, amount)
                if r.status_code == 201:
                    model.grants.append(ModelGrant(r.json()["id"], child, category, amount))
            elif model.grants:
                action, index, who = op
                # mostly a grant that can still change, sometimes any (finished ones too)
                live = [g for g in model.grants if g.status in LIVE]
                pool = live if live and index % 4 else model.grants
                g = pool[index % len(pool)]
                url = f"/v1/funds/grants/{g.id}/{action}"
                if action == "approve":
                    expected = model.approve(g, who)
                    r = await api.post(url, headers=hs[who])
                elif action == "disburse":
                    expected = model.act(action, g)
                    pay = {"method": "cash", "reference": f"P-{g.id}"}
                    r = await api.post(url, json=pay, headers=people.disburser)
                elif action == "reverse":
                    expected = model.act(action, g)
                    r = await api.post(url, json={"reason": "x"}, headers=people.manager)
                elif action == "reject":
                    expected = model.act(action, g)
                    r = await api.post(url, json={"reason": "x"}, headers=people.approver)
                else:
                    expected = model.act(action, g)
                    r = await api.post(url, headers=people.requester)
            else:
                continue
            assert r.status_code == expected, (step, op, r.text)

        state = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
        assert (
            state["topped_up_khr"],
            state["committed_khr"],
            state["disbursed_khr"],
            state["available_khr"],
        ) == (model.topped_up, model.committed, model.disbursed, model.available)
        assert state["available_khr"] >= 0
        recon = (
            await api.get(f"/v1/funds/reconciliation?fund_id={fund['id']}", headers=people.manager)
        ).json()
        assert recon["balanced"], recon["problems"]
        assert recon["ledger"] == recon["fund"]
        for status in ("requested", "approved", "disbursed", "reversed", "rejected", "cancelled"):
            mine = [g.amount for g in model.grants if g.status == status]
            assert recon["grants_by_status"][status] == {
                "count": len(mine),
                "amount_khr": sum(mine),
            }, status
    async with funds_app.state.runtime.db.transaction() as conn:
        await store.read_snapshot(conn)
        verdicts = {v.fund_id: v for v in await store.verify_ledger(conn)}
    assert verdicts[fund["id"]].balanced, verdicts[fund["id"]].problems


async def verify_ledger_cli(pg_url: str, repo_root: Path) -> tuple[int, str]:
    """Run `python -m services.funds verify-ledger` as an operator would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.funds",
        "verify-ledger",
        cwd=repo_root,
        env={**os.environ, "DATABASE_URL": pg_url, "KOMAR_LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, (out + err).decode()


async def test_a_ledger_row_altered_behind_the_services_back_is_caught(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    pg_url: str,
    repo_root: Path,
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = (await api.post("/v1/funds/funds", json=fund_body(), headers=people.manager)).json()
    grant = (
        await api.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child), headers=people.requester
        )
    ).json()
    await api.post(f"/v1/funds/grants/{grant['id']}/approve", headers=people.approver)
    await api.post(
        f"/v1/funds/grants/{grant['id']}/disburse",
        json={"method": "cash", "reference": f"R-{people.tag}"},
        headers=people.disburser,
    )
    code, output = await verify_ledger_cli(pg_url, repo_root)
    assert code == 0, output
    assert "ledger balanced" in output

    db = funds_app.state.runtime.db
    row = "SELECT id FROM funds.ledger WHERE grant_id = :g AND kind = 'disbursement'"
    async with db.transaction() as conn:
        entry_id = await conn.scalar(text(row), {"g": grant["id"]})
    # the guard refuses a change...
    for sql in (
        "UPDATE funds.ledger SET amount_khr = 1 WHERE id = :e",
        "DELETE FROM funds.ledger WHERE id = :e",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(text(sql), {"e": entry_id})

    # ...so an attacker with database rights switches it off first
    async def alter(sql: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(text("ALTER TABLE funds.ledger DISABLE TRIGGER ledger_append_only"))
            await conn.execute(text(sql), {"e": entry_id})
            await conn.execute(text("ALTER TABLE funds.ledger ENABLE TRIGGER ledger_append_only"))

    await alter("UPDATE funds.ledger SET amount_khr = amount_khr - 1000 WHERE id = :e")
    try:
        code, output = await verify_ledger_cli(pg_url, repo_root)
        assert code == 1, output
        assert f"fund {fund['id']} DOES NOT BALANCE" in output
        assert "1 of" in output  # only that fund
        assert grant["id"] in output  # and the grant whose entry no longer fits
        recon = (
            await api.get(f"/v1/funds/reconciliation?fund_id={fund['id']}", headers=people.manager)
        ).json()
        assert recon["balanced"] is False
        assert any("disbursed_khr" in p for p in recon["problems"])
    finally:  # put it back, so the rest of the suite sees straight books
        await alter("UPDATE funds.ledger SET amount_khr = amount_khr + 1000 WHERE id = :e")
    code, output = await verify_ledger_cli(pg_url, repo_root)
    assert code == 0, output
