"""Races a user would notice: lost updates and doubled records."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.registry.conftest import child_body
from tests.support import SigningKeys


async def test_two_patches_with_the_same_if_match_one_wins(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner")
    child = (await api.post("/v1/registry/children", json=child_body(), headers=h)).json()
    url = f"/v1/registry/children/{child['id']}"
    results = await asyncio.gather(
        api.patch(url, json={"risk_level": "high"}, headers={**h, "If-Match": '"1"'}),
        api.patch(url, json={"risk_level": "low"}, headers={**h, "If-Match": '"1"'}),
    )
    assert sorted(r.status_code for r in results) == [200, 412]
    final = (await api.get(url, headers=h)).json()
    assert final["version"] == 2
    winner = next(r for r in results if r.status_code == 200)
    assert final["risk_level"] == winner.json()["risk_level"]


async def test_fifty_parallel_posts_with_one_idempotency_key_create_one_child(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    org = f"ngo-{uuid.uuid4().hex[:6]}"
    h = {**keys.headers(org=org, org_type="partner", sub="sync-client"), "Idempotency-Key": "k-1"}
    body = child_body(given_name="Once")
    results = await asyncio.gather(
        *[api.post("/v1/registry/children", json=body, headers=h) for _ in range(50)]
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409}, codes
    created_ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(created_ids) == 1
    listed = await api.get(
        "/v1/registry/children", headers=keys.headers(org=org, org_type="partner")
    )
    assert len(listed.json()["items"]) == 1
    replay = await api.post("/v1/registry/children", json=body, headers=h)
    assert replay.status_code == 201
    assert replay.json()["id"] in created_ids
    assert replay.headers["idempotent-replayed"] == "true"
    different = await api.post(
        "/v1/registry/children", json=child_body(given_name="Other"), headers=h
    )
    assert different.status_code == 422


async def test_concurrent_registrations_are_each_whole_and_see_only_their_own_duplicates(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    """Registrations arriving together are written together (one statement per group):
    each still gets its own case number, history, audit entry and event, and its possible
    duplicates are those its own principal may see."""
    orgs = [f"ngo-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    senders = {org: keys.headers(org=org, org_type="partner") for org in orgs}
    known = await api.post(
        "/v1/registry/children",
        json=child_body(given_name="Rachana", family_name="Sam", birth_date="2014-06-01"),
        headers=senders[orgs[0]],
    )
    before = _group_commits()
    bodies = [
        (org, i, child_body(given_name="Rachana", family_name="Sam", birth_date="2014-07-01"))
        for i in range(10)
        for org in orgs
    ]
    answers = await asyncio.gather(
        *(
            api.post(
                "/v1/registry/children",
                json=body,
                headers={**senders[org], "X-Request-ID": f"req-{org}-{i}"},
            )
            for org, i, body in bodies
        )
    )
    assert [a.status_code for a in answers] == [201] * len(bodies)
    created = [a.json() for a in answers]
    assert len({c["case_number"] for c in created}) == len(created)
    for (org, _, _), child in zip(bodies, created, strict=True):
        assert child["owner_org"] == org
        found = [d["id"] for d in child["possible_duplicates"]]
        # Only the first organisation may see its earlier child; none sees the others'.
        assert found == ([known.json()["id"]] if org == orgs[0] else [])
    after = _group_commits()
    assert after[0] - before[0] == len(bodies)  # every registration went through a group …
    assert after[1] - before[1] < len(bodies)  # … and some groups held several

    admin = keys.headers(areas=["KH"], scope="admin")
    for (org, i, _), child in zip(bodies[:6], created[:6], strict=True):
        read = await api.get(f"/v1/registry/children/{child['id']}", headers=senders[org])
        assert read.json()["case_number"] == child["case_number"]
        history = await api.get(
            f"/v1/registry/children/{child['id']}/history", headers=senders[org]
        )
        assert [h["action"] for h in history.json()["items"]] == ["registered"]
        audit = await api.get(f"/v1/registry/audit?child_id={child['id']}", headers=admin)
        entries = [(e["action"], e["request_id"]) for e in audit.json()["items"]]
        assert entries[0] == ("create", f"req-{org}-{i}")


async def test_concurrent_reads_each_answer_as_their_reader_may_see(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    """Reads arriving together are read and audited together: each caller still gets the
    child only if it may see it, and only the reads that found it are in the audit log."""
    owner = f"ngo-{uuid.uuid4().hex[:6]}"
    readers = {
        "owner": (keys.headers(org=owner, org_type="partner"), 200),
        "other partner": (keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner"), 404),
        "other province": (keys.headers(org="moswvy", areas=["17"]), 404),
        "province": (keys.headers(org="moswvy", areas=["12"]), 200),
    }
    child = (
        await api.post("/v1/registry/children", json=child_body(), headers=readers["owner"][0])
    ).json()
    before = _group_commits("reads")
    calls = [(name, i) for i in range(8) for name in readers]
    answers = await asyncio.gather(
        *(
            api.get(
                f"/v1/registry/children/{child['id']}",
                headers={**readers[name][0], "X-Request-ID": f"read-{i}-{name}"},
            )
            for name, i in calls
        )
    )
    for (name, _), answer in zip(calls, answers, strict=True):
        assert answer.status_code == readers[name][1], name
        if answer.status_code == 200:
            assert answer.json()["case_number"] == child["case_number"]
    after = _group_commits("reads")
    assert after[0] - before[0] == len(calls)
    assert after[1] - before[1] < len(calls)
    audit = await api.get(
        f"/v1/registry/audit?child_id={child['id']}",
        headers=keys.headers(areas=["KH"], scope="admin"),
    )
    reads = sorted(e["request_id"] for e in audit.json()["items"] if e["action"] == "read")
    assert reads == sorted(f"read-{i}-{name}" for name, i in calls if readers[name][1] == 200)


def _group_commits(group: str = "registrations") -> tuple[float, float]:
    """Items written through a group commit so far, and the number of groups."""
    from prometheus_client import REGISTRY

    total = REGISTRY.get_sample_value("komar_group_commit_size_sum", {"group": group})
    count = REGISTRY.get_sample_value("komar_group_commit_size_count", {"group": group})
    return total or 0.0, count or 0.0
