"""The referral state machine as providers and referrers live it: legal moves, 409 for the
rest with nothing changed, races, If-Match and Idempotency-Key on actions."""

from __future__ import annotations

import asyncio

from tests.referrals.conftest import World

BODIES = {
    "accept": None,
    "decline": {"reason": "no beds"},
    "complete": {"outcome": {"code": "service_provided", "note": "seen twice"}},
    "cancel": {"reason": "family moved"},
}


async def setup(world: World) -> tuple[dict, dict, dict[str, str]]:
    """A referral pending at the only provider; the provider's staff headers."""
    provider = await world.provider([world.place.village], capacity=5)
    referral = (await world.refer(await world.child())).json()
    return provider, referral, world.provider_staff(provider)


async def act(world: World, referral: dict, action: str, headers: dict, **kw: object):
    return await world.api.post(
        f"/v1/referrals/{referral['id']}/{action}", json=BODIES[action], headers=headers, **kw
    )


async def actor(world: World, action: str, staff: dict) -> dict:
    """Who does an action: the provider's staff responds, the referrer cancels."""
    return world.headers() if action == "cancel" else staff


async def assert_409_changes_nothing(
    world: World, referral: dict, action: str, staff: dict
) -> None:
    before = await world.get_referral(referral["id"])
    r = await act(world, referral, action, await actor(world, action, staff))
    assert r.status_code == 409, (action, before["status"], r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["current_state"] == before["status"]
    assert before["status"] in r.json()["detail"]
    after = await world.get_referral(referral["id"])
    assert after == before  # same version, same state, same everything


async def test_the_happy_path_counts_load_and_records_the_outcome(world: World) -> None:
    provider, referral, staff = await setup(world)
    assert (await world.get_provider(provider))["open_referrals"] == 1
    accepted = await act(world, referral, "accept", staff)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["version"] == 2
    assert accepted.headers["etag"] == '"2"'
    assert (await world.get_provider(provider))["open_referrals"] == 1
    done = await act(world, referral, "complete", staff)
    assert done.status_code == 200, done.text
    assert done.json()["outcome"] == {"code": "service_provided", "note": "seen twice"}
    assert done.json()["status"] == "completed"
    assert done.json()["closed_at"] is not None
    assert (await world.get_provider(provider))["open_referrals"] == 0


async def test_every_illegal_transition_is_409_and_changes_nothing(world: World) -> None:
    _, pending, staff = await setup(world)
    # pending: cannot be completed
    await assert_409_changes_nothing(world, pending, "complete", staff)

    # accepted: cannot be accepted again or declined
    assert (await act(world, pending, "accept", staff)).status_code == 200
    for action in ("accept", "decline"):
        await assert_409_changes_nothing(world, pending, action, staff)

    # completed: nothing more
    assert (await act(world, pending, "complete", staff)).status_code == 200
    for action in ("accept", "decline", "complete", "cancel"):
        await assert_409_changes_nothing(world, pending, action, staff)

    # cancelled: nothing more
    cancelled = (await world.refer(await world.child())).json()
    assert (await act(world, cancelled, "cancel", world.headers())).status_code == 200
    for action in ("accept", "decline", "complete", "cancel"):
        await assert_409_changes_nothing(world, cancelled, action, staff)

    # declined: nothing more
    declined = (await world.refer(await world.child())).json()
    assert (await act(world, declined, "decline", staff)).status_code == 200
    for action in ("accept", "decline", "complete", "cancel"):
        await assert_409_changes_nothing(world, declined, action, staff)


async def test_an_accepted_referral_can_still_be_cancelled(world: World) -> None:
    provider, referral, staff = await setup(world)
    assert (await act(world, referral, "accept", staff)).status_code == 200
    r = await act(world, referral, "cancel", world.headers())
    assert r.status_code == 200
    assert r.json()["cancel_reason"] == "family moved"
    assert (await world.get_provider(provider))["open_referrals"] == 0


async def test_two_of_the_providers_staff_accepting_at_once_exactly_one_wins(
    world: World,
) -> None:
    provider, referral, _ = await setup(world)
    first = world.provider_staff(provider, sub="caseworker-1")
    second = world.provider_staff(provider, sub="caseworker-2")
    results = await asyncio.gather(
        act(world, referral, "accept", first), act(world, referral, "accept", second)
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    final = await world.get_referral(referral["id"])
    assert final["version"] == 2
    assert final["status"] == "accepted"
    winner = next(r for r in results if r.status_code == 200).json()
    assert final["last_action_by"] == winner["last_action_by"]


async def test_accept_and_cancel_racing_leave_one_consistent_answer(world: World) -> None:
    provider, referral, staff = await setup(world)
    results = await asyncio.gather(
        act(world, referral, "accept", staff), act(world, referral, "cancel", world.headers())
    )
    codes = sorted(r.status_code for r in results)
    final = await world.get_referral(referral["id"])
    assert codes in ([200, 200], [200, 409])
    if codes == [200, 200]:  # accepted first, then cancelled: both legal in that order
        assert final["status"] == "cancelled"
        assert final["version"] == 3
    else:
        assert final["status"] == "cancelled"
        assert final["version"] == 2
    assert (await world.get_provider(provider))["open_referrals"] == 0


async def test_a_stale_if_match_is_412_and_a_fresh_one_works(world: World) -> None:
    _, referral, staff = await setup(world)
    stale = await act(world, referral, "accept", {**staff, "If-Match": '"7"'})
    assert stale.status_code == 412
    assert (await world.get_referral(referral["id"]))["status"] == "pending"
    fresh = await act(world, referral, "accept", {**staff, "If-Match": '"1"'})
    assert fresh.status_code == 200


async def test_a_repeated_action_with_the_same_idempotency_key_replays(world: World) -> None:
    _, referral, staff = await setup(world)
    h = {**staff, "Idempotency-Key": "accept-once"}
    first = await act(world, referral, "accept", h)
    again = await act(world, referral, "accept", h)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (await world.get_referral(referral["id"]))["version"] == 2
    without_key = await act(world, referral, "accept", staff)
    assert without_key.status_code == 409


async def test_only_the_providers_organisation_responds(world: World) -> None:
    provider, referral, staff = await setup(world)
    referrer = world.headers()  # government of the district: sees it, is not the provider
    other_partner_referrer = world.headers(org="ngo-referrer", org_type="partner")
    for action in ("accept", "decline", "complete"):
        r = await act(world, referral, action, referrer)
        assert r.status_code == 403, (action, r.text)
    no_scope = world.provider_staff(provider, scope="referrals:read referrals:write")
    assert (await act(world, referral, "accept", no_scope)).status_code == 403
    # a partner that is neither provider nor referrer cannot even see it
    assert (await act(world, referral, "accept", other_partner_referrer)).status_code == 404
    assert (await world.get_referral(referral["id"]))["version"] == 1
    assert (await act(world, referral, "accept", staff)).status_code == 200


async def test_only_the_referrer_or_government_of_the_place_cancels(world: World) -> None:
    p = world.place
    provider = await world.provider([p.village])
    referrer_org = "ngo-referrer-x"
    child = await world.child(owner_org=referrer_org)
    partner = world.headers(org=referrer_org, org_type="partner")
    referral = (await world.refer(child, headers=partner)).json()
    assert referral["referred_by"]["org"] == referrer_org

    provider_staff = world.provider_staff(provider)
    assert (await act(world, referral, "cancel", provider_staff)).status_code == 403
    assert (await act(world, referral, "cancel", partner)).status_code == 200

    second = (await world.refer(await world.child(owner_org=referrer_org), headers=partner)).json()
    other_gov = world.headers(org="moswvy-other-office", areas=[p.commune])
    assert (await act(world, second, "cancel", other_gov)).status_code == 200
