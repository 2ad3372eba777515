"""children:batch: external ids resolved for the whole batch, every new child written with
its history, audit and outbox rows, and no possible_duplicates answered."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.registry import store
from tests.registry.conftest import child_body
from tests.registry.test_audit import seal_and_verify
from tests.registry.test_children import register, unique_org
from tests.support import SigningKeys

BATCH = "/v1/registry/children:batch"


def ext(*values: str) -> list[dict[str, str]]:
    return [{"system": "cms", "value": v} for v in values]


async def test_external_ids_answer_existing_children_of_the_batch_and_before(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=unique_org(), org_type="partner")
    before = await register(api, h, external_ids=ext("A"))
    items = [
        child_body(given_name="Held", external_ids=ext("A", "B")),  # A: an existing child
        child_body(given_name="Bee", external_ids=ext("B")),  # B: not kept by the first
        child_body(given_name="Cee", external_ids=ext("C")),
        child_body(given_name="CeeDee", external_ids=ext("C", "D")),  # C: the item before
        child_body(given_name="Dee", external_ids=ext("D")),  # D: not kept by the one before
        child_body(given_name="None"),
    ]
    r = await api.post(BATCH, json={"items": items}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()["results"]
    assert [x["status"] for x in first] == [
        "existing",
        "created",
        "created",
        "existing",
        "created",
        "created",
    ]
    assert first[0]["id"] == before["id"]
    assert first[3]["id"] == first[2]["id"]
    for result, name in ((first[1], "Bee"), (first[2], "Cee"), (first[4], "Dee")):
        got = await api.get(f"/v1/registry/children/{result['id']}", headers=h)
        assert got.json()["given_name"] == name
    again = (await api.post(BATCH, json={"items": items}, headers=h)).json()["results"]
    assert [x["status"] for x in again] == ["existing"] * 5 + ["created"]
    assert [x["id"] for x in again[:5]] == [x["id"] for x in first[:5]]


async def test_batch_writes_history_audit_and_registered_events(
    registry_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(sub="batch-worker")
    items = [child_body(given_name=f"Batch{i}") for i in range(3)]
    r = await api.post(BATCH, json={"items": items}, headers=h)
    ids = [x["id"] for x in r.json()["results"]]
    assert all("possible_duplicates" not in x for x in r.json()["results"])
    db = registry_app.state.runtime.db
    async with db.transaction() as conn:
        events = (
            await conn.execute(
                text(
                    "SELECT type, payload FROM registry.outbox"
                    " WHERE payload->>'subject' = ANY(:ids)"
                ),
                {"ids": ids},
            )
        ).all()
        history = (
            await conn.execute(
                text(
                    "SELECT child_id::text, version, action, actor_sub FROM registry.child_history"
                    " WHERE child_id::text = ANY(:ids)"
                ),
                {"ids": ids},
            )
        ).all()
        audit = (
            await conn.execute(
                text(
                    "SELECT child_id::text, action FROM registry.audit_log"
                    " WHERE child_id::text = ANY(:ids)"
                ),
                {"ids": ids},
            )
        ).all()
    assert sorted(h_[0] for h_ in history) == sorted(ids)
    assert {(v, a, s) for _, v, a, s in history} == {(1, "registered", "batch-worker")}
    assert sorted(a[0] for a in audit) == sorted(ids)
    assert {a[1] for a in audit} == {"create"}
    assert len(events) == 3
    for type_, payload in events:
        payload = payload if isinstance(payload, dict) else json.loads(payload)
        assert type_ == "registry.child.registered.v1"
        child = (await api.get(f"/v1/registry/children/{payload['subject']}", headers=h)).json()
        assert payload["data"]["case_number"] == child["case_number"]
        assert payload["data"]["child_id"] == child["id"]
        assert payload["data"]["commune_code"] == child["commune_code"]
        assert payload["data"]["version"] == 1
        assert "given_name" not in payload["data"]  # events carry no names
    verdict = await seal_and_verify(registry_app)
    assert verdict.ok, verdict


async def test_a_claim_taken_since_the_look_up_keeps_none_of_the_batch_claims(
    registry_app: FastAPI, api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    org = unique_org()
    h = keys.headers(org=org, org_type="partner")
    await register(api, h, external_ids=ext("X"))
    new = uuid.uuid4()
    db = registry_app.state.runtime.db
    async with db.transaction() as conn:
        claimed = await store.claim_all_external_ids(
            conn, org, [("cms", "Y", new), ("cms", "X", new)]
        )
        assert claimed is False
        left = await conn.scalar(
            text("SELECT count(*) FROM registry.external_ids WHERE child_id = :id"), {"id": new}
        )
        assert left == 0


async def test_an_id_claimed_by_another_transaction_during_a_batch_answers_its_child(
    registry_app: FastAPI,
    api: httpx.AsyncClient,
    keys: SigningKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = unique_org()
    h = keys.headers(org=org, org_type="partner")
    other = await register(api, h, external_ids=ext("K"))
    db = registry_app.state.runtime.db
    look_up = store.external_id_owners

    async def look_up_then_claimed_elsewhere(*args: Any) -> Any:
        owners = await look_up(*args)
        async with db.transaction() as conn:  # another transaction, committed meanwhile
            await conn.execute(
                text(
                    "INSERT INTO registry.external_ids (org, system, value, child_id)"
                    " VALUES (:org, 'cms', 'R', :child)"
                ),
                {"org": org, "child": uuid.UUID(other["id"])},
            )
        return owners

    monkeypatch.setattr(store, "external_id_owners", look_up_then_claimed_elsewhere)
    items = [
        child_body(given_name="Ess", external_ids=ext("S")),
        child_body(given_name="Arr", external_ids=ext("R")),
        child_body(given_name="EssAgain", external_ids=ext("S")),
    ]
    r = await api.post(BATCH, json={"items": items}, headers=h)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "existing", "existing"]
    assert results[1]["id"] == other["id"]
    assert results[2]["id"] == results[0]["id"]
    got = await api.get(f"/v1/registry/children/{results[0]['id']}", headers=h)
    assert got.json()["given_name"] == "Ess"
