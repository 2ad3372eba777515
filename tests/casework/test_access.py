"""Who sees what: another commune's principal and another partner organisation get 404
on every id endpoint; a partner reading a child through a referral may not change it."""

from __future__ import annotations

import uuid

from tests.casework.conftest import World, publish
from tests.support import referral_event


async def test_others_get_404_on_every_id_endpoint(world: World) -> None:
    ngo = f"ngo-{uuid.uuid4().hex[:6]}"
    child = await world.child(owner_org=ngo)
    owner = world.partner(ngo)
    worker = await world.worker(org=ngo, headers=owner, areas=[world.place.commune])
    assignment = (await world.assign(child, worker["id"], headers=owner)).json()
    visit = (await world.visit(child, headers=owner, notes="private")).json()
    r = await world.api.put(
        f"/v1/casework/children/{child}/plan",
        json={"goals": [{"domain": "health", "action": "x", "due_on": "2027-01-01"}]},
        headers=owner,
    )
    assert r.status_code == 201, r.text

    strangers = {
        "another commune": world.headers(areas=[world.place.other_commune]),
        "another partner": world.partner("ngo-stranger"),
    }
    reads = [
        f"/v1/casework/workers/{worker['id']}",
        f"/v1/casework/assignments/{assignment['id']}",
        f"/v1/casework/children/{child}",
        f"/v1/casework/children/{child}/plan",
        f"/v1/casework/visits/{visit['id']}",
    ]
    for who, h in strangers.items():
        for url in reads:
            r = await world.api.get(url, headers=h)
            assert r.status_code == 404, (who, url, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await world.api.patch(
            f"/v1/casework/workers/{worker['id']}",
            content=b'{"status": "inactive"}',
            headers={**h, "Content-Type": "application/merge-patch+json", "If-Match": '"1"'},
        )
        assert r.status_code == 404, who
        r = await world.api.put(
            f"/v1/casework/children/{child}/plan",
            json={"goals": []},
            headers={**h, "If-Match": '"1"'},
        )
        assert r.status_code == 404, who
        await world.visit(child, headers=h, expect=404)
        r = await world.assign(child, worker["id"], headers=h, expect=404)
        for url in ("/v1/casework/assignments", "/v1/casework/visits", "/v1/casework/visits/due"):
            r = await world.api.get(
                url, params={"child_id": child} if "due" not in url else {}, headers=h
            )
            assert r.status_code == 200, (who, url)
            assert r.json()["items"] == [], (who, url)
    # The owner and government staff of the place see it all.
    for h in (owner, world.headers(areas=[world.place.commune])):
        for url in reads:
            assert (await world.api.get(url, headers=h)).status_code == 200, url


async def test_a_referral_gives_read_only_access(world: World) -> None:
    child = await world.child()
    provider = f"ngo-{uuid.uuid4().hex[:6]}"
    h = world.partner(provider)
    assert (await world.api.get(f"/v1/casework/children/{child}", headers=h)).status_code == 404
    await publish(
        world.js,
        [
            referral_event(
                child,
                provider_org=provider,
                status="accepted",
                version=2,
                commune=world.place.commune,
            )
        ],
    )
    from tests.casework.conftest import until

    async def readable() -> bool:
        r = await world.api.get(f"/v1/casework/children/{child}", headers=h)
        return r.status_code == 200

    await until(readable, what="the referral share")
    await world.visit(child, headers=h, expect=403)
    r = await world.api.put(
        f"/v1/casework/children/{child}/plan",
        json={"goals": []},
        headers=h,
    )
    assert r.status_code == 403


async def test_scopes(world: World) -> None:
    child = await world.child()
    reader = world.headers(scope="casework:read")
    await world.visit(child, headers=reader, expect=403)
    nobody = world.headers(scope="registry:read")
    r = await world.api.get(f"/v1/casework/children/{child}", headers=nobody)
    assert r.status_code == 403
    r = await world.api.get("/v1/casework/children/not-a-uuid", headers=world.headers())
    assert r.status_code == 404


async def test_the_assigned_worker_signed_in_reads_and_records_visits(world: World) -> None:
    child = await world.child()  # registered by government staff
    ngo = f"ngo-{uuid.uuid4().hex[:6]}"
    username = f"w{uuid.uuid4().hex[:10]}"
    manager = world.partner(ngo)
    worker = await world.worker(org=ngo, headers=manager, username=username)
    # The user who is the worker: the token's preferred_username, of the worker's org.
    me = world.partner(ngo, preferred_username=username)
    url = f"/v1/casework/children/{child}"
    assert (await world.api.get(url, headers=me)).status_code == 404
    await world.visit(child, headers=me, expect=404)
    # Government staff give the child the NGO's worker: the worker reads it, records visits...
    first = (await world.assign(child, worker["id"])).json()
    assert (await world.api.get(url, headers=me)).status_code == 200
    r = await world.api.get(f"/v1/casework/assignments/{first['id']}", headers=me)
    assert r.status_code == 200
    visit = (await world.visit(child, headers=me)).json()
    assert visit["worker_id"] == worker["id"]
    r = await world.api.get("/v1/casework/visits/due", headers=me)
    assert r.status_code == 200
    # ...but changes nothing else about the child.
    r = await world.api.put(f"{url}/plan", json={"goals": []}, headers=me)
    assert r.status_code == 403
    other = await world.worker(org=ngo, headers=manager)
    await world.assign(child, other["id"], headers=me, expect=403)
    # Other users and clients of the organisation see nothing more than it does.
    for h in (manager, world.partner(ngo, preferred_username="someone-else")):
        assert (await world.api.get(url, headers=h)).status_code == 404
        await world.visit(child, headers=h, expect=404)
    # Another organisation's user of the same name neither.
    stranger = world.partner("ngo-stranger", preferred_username=username)
    assert (await world.api.get(url, headers=stranger)).status_code == 404
    # Once the child has another worker, it is gone from the first worker's view.
    await world.assign(child, (await world.worker()).get("id"))
    assert (await world.api.get(url, headers=me)).status_code == 404
    r = await world.api.get(f"/v1/casework/visits/{visit['id']}", headers=me)
    assert r.status_code == 404
