"""Routing: the most local provider, then the least loaded; never an inactive or full one."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from libs.common import places
from tests.referrals.conftest import World


async def test_the_most_local_provider_wins(world: World) -> None:
    p = world.place
    district = await world.provider([p.district], name="District clinic")
    commune = await world.provider([p.commune], name="Commune clinic")
    village = await world.provider([p.village], name="Village clinic")
    elsewhere = await world.provider([p.other_commune_village], name="Other village clinic")

    at_village = (await world.refer(await world.child(village=p.village))).json()
    at_other_village = (await world.refer(await world.child(village=p.other_village))).json()
    at_other_commune = (
        await world.refer(await world.child(village=p.other_commune_village))
    ).json()
    commune_only = (await world.refer(await world.child(commune=p.commune))).json()

    assert at_village["provider_id"] == village["id"]
    assert at_other_village["provider_id"] == commune["id"]
    assert at_other_commune["provider_id"] == elsewhere["id"]
    assert commune_only["provider_id"] == commune["id"]  # no village: the commune is the place
    assert at_village["status"] == "pending"
    assert at_village["provider_org"] == village["org"]
    assert (await world.get_provider(village))["open_referrals"] == 1
    assert (await world.get_provider(district))["open_referrals"] == 0


async def test_inactive_and_full_providers_are_skipped(world: World) -> None:
    p = world.place
    await world.provider([p.village], active=False, name="Closed clinic")
    await world.provider([p.village], capacity=0, name="No room at all")
    one_slot = await world.provider([p.village], capacity=1, name="One bed")
    district = await world.provider([p.district], name="District clinic")

    first = (await world.refer(await world.child())).json()
    second = (await world.refer(await world.child())).json()

    assert first["provider_id"] == one_slot["id"]
    assert second["provider_id"] == district["id"]  # the village one is full now
    assert (await world.get_provider(one_slot))["open_referrals"] == 1


async def test_load_spreads_between_two_equal_providers(world: World) -> None:
    p = world.place
    a = await world.provider([p.commune], capacity=4)
    b = await world.provider([p.commune], capacity=4)
    chosen = [(await world.refer(await world.child())).json()["provider_id"] for _ in range(6)]
    assert Counter(chosen) == {a["id"]: 3, b["id"]: 3}
    # each pick went to the one less loaded at the time: never two in a row to the same one
    assert all(x != y for x, y in itertools.pairwise(chosen))


async def test_load_is_relative_to_capacity(world: World) -> None:
    p = world.place
    small = await world.provider([p.commune], capacity=2)
    large = await world.provider([p.commune], capacity=10)
    chosen = [(await world.refer(await world.child())).json()["provider_id"] for _ in range(6)]
    # 1/2 of the small one weighs more than 1/10, 2/10, ... of the large one
    assert Counter(chosen) == {small["id"]: 1, large["id"]: 5}


async def test_no_provider_answers_422_naming_the_service_and_the_place(world: World) -> None:
    p = world.place
    await world.provider([p.district], ["health"], capacity=1)
    child = await world.child(village=p.village)

    r = await world.refer(child, "shelter", expect=422)
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert "shelter" in problem["detail"]
    assert p.village in problem["detail"]
    assert places.name_en(p.village) in problem["detail"]
    assert problem["service_type"] == "shelter"
    assert problem["place_code"] == p.village

    await world.refer(child, "health")  # takes the only slot
    full = await world.refer(await world.child(), "health", expect=422)
    assert "health" in full.json()["detail"]


async def test_a_named_provider_must_be_able_to_take_the_referral(world: World) -> None:
    p = world.place
    local = await world.provider([p.village])
    district = await world.provider([p.district], ["health", "legal"])
    inactive = await world.provider([p.district], active=False)
    full = await world.provider([p.district], capacity=0)
    elsewhere = await world.provider([p.other_commune])
    child = await world.child()

    for provider, words in [
        (inactive, "not active"),
        (full, "full"),
        (elsewhere, "does not serve"),
        (local, "does not offer legal"),
    ]:
        service = "legal" if provider is local else "health"
        r = await world.refer(child, service, provider_id=provider["id"], expect=422)
        assert words in r.json()["detail"]
        assert r.json()["errors"][0]["field"] == "provider_id"
    chosen = await world.refer(child, provider_id=district["id"])
    assert chosen.json()["provider_id"] == district["id"]  # less local, but chosen by name
    assert (await world.get_provider(local))["open_referrals"] == 0


async def test_concurrent_referrals_cannot_overfill_the_last_slots(world: World) -> None:
    p = world.place
    first = await world.provider([p.village], capacity=1)
    second = await world.provider([p.village], capacity=1)
    children = [await world.child() for _ in range(6)]
    results = await asyncio.gather(*[world.refer(c, expect=None) for c in children])
    assert sorted(r.status_code for r in results) == [201, 201, 422, 422, 422, 422]
    # those that found their first choice taken meanwhile went on to the other one
    taken = {r.json()["provider_id"] for r in results if r.status_code == 201}
    assert taken == {first["id"], second["id"]}
    assert (await world.get_provider(first))["open_referrals"] == 1
    assert (await world.get_provider(second))["open_referrals"] == 1
