"""Consent before sharing a child with a provider, and declined referrals going on to the next."""

from __future__ import annotations

import json
from datetime import datetime

from tests.referrals.conftest import World, wait_for_events

JUSTIFICATION = "Imminent danger JUSTIFY-7f3a: the child was found alone at the river"


async def test_without_consent_a_partner_is_refused(world: World) -> None:
    await world.provider([world.place.district])
    child = await world.child(owner_org="ngo-owner", consent=False)
    partner = world.headers(org="ngo-owner", org_type="partner")
    r = await world.refer(child, headers=partner, expect=403)
    assert "consent" in r.json()["detail"]
    with_override = await world.refer(
        child, headers=partner, consent_override={"justification": "urgent"}, expect=403
    )
    assert "government" in with_override.json()["detail"]
    listed = await world.api.get(f"/v1/referrals?child_id={child}", headers=world.headers())
    assert listed.json()["items"] == []


async def test_without_consent_government_needs_a_justification(
    world: World, nats_url: str
) -> None:
    provider = await world.provider([world.place.district])
    child = await world.child(consent=False)
    missing = await world.refer(child, expect=422)
    assert missing.json()["errors"][0]["field"] == "consent_override"

    gov = {**world.headers(sub="officer-sophea"), "X-Request-ID": "req-override-1"}
    r = await world.refer(child, headers=gov, consent_override={"justification": JUSTIFICATION})
    referral = r.json()
    assert referral["consent_override"]["justification"] == JUSTIFICATION
    assert referral["consent_override"]["by"] == {"sub": "officer-sophea", "org": "moswvy-test"}
    assert (await world.get_provider(provider))["open_referrals"] == 1

    [event] = await wait_for_events(
        nats_url, {referral["id"]}, {"referrals.referral.created.v1"}, 1
    )
    assert event["data"]["consent_override"] is True
    assert event["requestid"] == "req-override-1"
    assert "JUSTIFY-7f3a" not in json.dumps(event)


async def test_with_consent_no_override_is_recorded(world: World) -> None:
    await world.provider([world.place.district])
    referral = (
        await world.refer(await world.child(), consent_override={"justification": "not needed"})
    ).json()
    assert referral["consent_override"] is None


async def test_a_decline_reroutes_to_the_next_provider_then_to_nobody(world: World) -> None:
    p = world.place
    village = await world.provider([p.village], capacity=3)
    district = await world.provider([p.district], capacity=3)
    first = (await world.refer(await world.child(), urgency="emergency")).json()
    assert first["provider_id"] == village["id"]

    r = await world.api.post(
        f"/v1/referrals/{first['id']}/decline",
        json={"reason": "no doctor this week"},
        headers=world.provider_staff(village),
    )
    assert r.status_code == 200, r.text
    declined = r.json()
    assert declined["status"] == "declined"
    assert declined["decline_reason"] == "no doctor this week"
    second = await world.get_referral(declined["rerouted_to"])
    assert second["previous_referral_id"] == first["id"]
    assert second["provider_id"] == district["id"]
    assert second["status"] == "pending"
    assert second["child_id"] == first["child_id"]
    assert second["urgency"] == "emergency"
    assert second["referred_by"] == first["referred_by"]
    assert datetime.fromisoformat(second["due_at"]) > datetime.fromisoformat(first["due_at"])
    assert (await world.get_provider(village))["open_referrals"] == 0
    assert (await world.get_provider(district))["open_referrals"] == 1

    # the district provider declines too; the village one already declined: nobody is left
    r = await world.api.post(
        f"/v1/referrals/{second['id']}/decline",
        json={"reason": "too far"},
        headers=world.provider_staff(district),
    )
    assert r.status_code == 200, r.text
    assert r.json()["rerouted_to"] is None
    assert r.json()["status"] == "declined"
    assert (await world.get_provider(district))["open_referrals"] == 0
    chain = await world.api.get(
        f"/v1/referrals?child_id={first['child_id']}", headers=world.headers()
    )
    assert sorted(x["status"] for x in chain.json()["items"]) == ["declined", "declined"]


async def test_a_reroute_skips_full_providers_and_picks_the_next_most_local(
    world: World,
) -> None:
    p = world.place
    village = await world.provider([p.village])
    commune_full = await world.provider([p.commune], capacity=1)
    district = await world.provider([p.district])
    await world.refer(await world.child(village=p.other_village))  # fills the commune one
    assert (await world.get_provider(commune_full))["open_referrals"] == 1
    first = (await world.refer(await world.child())).json()
    r = await world.api.post(
        f"/v1/referrals/{first['id']}/decline",
        json={"reason": "full"},
        headers=world.provider_staff(village),
    )
    assert (await world.get_referral(r.json()["rerouted_to"]))["provider_id"] == district["id"]
