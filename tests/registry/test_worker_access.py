"""A casework worker who signs in reads, read-only, the children assigned to them: the
registry learns workers' accounts and assignments from casework events."""

from __future__ import annotations

import uuid

import httpx
import nats

from libs.common.events.casework_events import AssignmentV1, WorkerUpsertedV1
from libs.common.events.envelope import new_event
from tests.registry.conftest import child_body
from tests.registry.test_referral_access import status_until
from tests.support import SigningKeys


async def publish(nats_url: str, type_: str, subject: str, data: object) -> None:
    """A casework event exactly as the casework service publishes it."""
    event = new_event("casework", type_, subject, data, None)  # type: ignore[arg-type]
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            type_, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id}
        )
    finally:
        await nc.close()


def worker(worker_id: str, org: str, username: str | None, version: int = 1) -> WorkerUpsertedV1:
    return WorkerUpsertedV1(
        worker_id=worker_id,
        org=org,
        org_type="partner",
        role="community_support_worker",
        sex="female",
        areas=["120101"],
        status="active",
        max_caseload=25,
        trainings=[],
        contracts=[],
        version=version,
        username=username,
    )


def assignment(assignment_id: str, child_id: str, worker_id: str, org: str, status: str):
    return AssignmentV1(
        assignment_id=assignment_id,
        child_id=child_id,
        worker_id=worker_id,
        commune_code="120101",
        org=org,
        status=status,
        started_on="2026-12-01",
        ended_on=None if status == "active" else "2026-12-02",
        caseload=1,
        max_caseload=25,
        override=False,
    )


async def test_an_assigned_worker_reads_the_child_read_only_until_reassigned(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    government = keys.headers(org="ccwc-tonle-basak", org_type="government", areas=["120101"])
    child = (await api.post("/v1/registry/children", json=child_body(), headers=government)).json()
    url = f"/v1/registry/children/{child['id']}"
    ngo = f"ngo-{uuid.uuid4().hex[:6]}"
    first, second = f"sokha-{uuid.uuid4().hex[:6]}", f"dara-{uuid.uuid4().hex[:6]}"
    first_worker, second_worker = str(uuid.uuid4()), str(uuid.uuid4())

    def user(name: str) -> dict[str, str]:
        return keys.headers(org=ngo, org_type="partner", areas=["120101"], preferred_username=name)

    client = keys.headers(org=ngo, org_type="partner", areas=["120101"])
    await publish(
        nats_url, "casework.worker.upserted.v1", first_worker, worker(first_worker, ngo, first)
    )
    await publish(
        nats_url, "casework.worker.upserted.v1", second_worker, worker(second_worker, ngo, second)
    )
    assert (await api.get(url, headers=user(first))).status_code == 404  # not yet assigned

    one = str(uuid.uuid4())
    await publish(
        nats_url,
        "casework.assignment.started.v1",
        one,
        assignment(one, child["id"], first_worker, ngo, "active"),
    )
    assert await status_until(api, url, user(first), 200) == 200
    # read-only: the organisation did not register the child
    r = await api.patch(
        url, json={"risk_level": "high"}, headers={**user(first), "If-Match": '"1"'}
    )
    assert r.status_code == 403
    # in lists and searches too
    listed = (await api.get("/v1/registry/children", headers=user(first))).json()["items"]
    assert [c["id"] for c in listed] == [child["id"]]
    # the organisation's other users and its API clients see nothing more than it does
    assert (await api.get(url, headers=user(second))).status_code == 404
    assert (await api.get(url, headers=client)).status_code == 404
    # another organisation's user of the same name sees nothing
    other = keys.headers(
        org=f"ngo-{uuid.uuid4().hex[:6]}",
        org_type="partner",
        areas=["120101"],
        preferred_username=first,
    )
    assert (await api.get(url, headers=other)).status_code == 404
    # nor does the worker outside their areas
    away = keys.headers(org=ngo, org_type="partner", areas=["120102"], preferred_username=first)
    assert (await api.get(url, headers=away)).status_code == 404

    # reassigned: the first worker's access ends, the second's begins
    two = str(uuid.uuid4())
    await publish(
        nats_url,
        "casework.assignment.ended.v1",
        one,
        assignment(one, child["id"], first_worker, ngo, "ended"),
    )
    await publish(
        nats_url,
        "casework.assignment.started.v1",
        two,
        assignment(two, child["id"], second_worker, ngo, "active"),
    )
    assert await status_until(api, url, user(second), 200) == 200
    assert await status_until(api, url, user(first), 404) == 404

    # a worker whose account is taken away no longer reads through it
    await publish(
        nats_url,
        "casework.worker.upserted.v1",
        second_worker,
        worker(second_worker, ngo, None, version=2),
    )
    assert await status_until(api, url, user(second), 404) == 404
