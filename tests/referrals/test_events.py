"""referrals.* events: every state change, the fields the registry and indicators rely on,
and no free text (no reason, justification, note, name or contact) in any of them."""

from __future__ import annotations

import json
from collections import Counter

from tests.referrals.conftest import World, wait_for_events

REFERRAL_FIELDS = {
    "referral_id",
    "child_id",
    "commune_code",
    "village_code",
    "service_type",
    "urgency",
    "status",
    "provider_id",
    "provider_org",
    "referrer_org",
    "previous_referral_id",
    "due_at",
    "overdue",
    "consent_override",
    "outcome_code",
    "version",
}
PROVIDER_FIELDS = {"provider_id", "org", "service_types", "areas", "capacity", "active", "version"}
SECRETS = (
    "NAME-91",
    "+855 99 888 777",
    "secret@clinic.kh",
    "ADDRESS-55",
    "REASON-42",
    "NOTE-77",
    "DECLINE-13",
    "CANCEL-21",
    "JUSTIFY-88",
)


async def test_events_carry_codes_and_states_never_free_text(world: World, nats_url: str) -> None:
    p = world.place
    staff_org = "ngo-events-clinic"
    created = await world.api.post(
        "/v1/referrals/providers",
        json={
            "name": "Clinic NAME-91",
            "org": staff_org,
            "service_types": ["health", "psychosocial"],
            "areas": [p.commune],
            "contact": {
                "phone": "+855 99 888 777",
                "email": "secret@clinic.kh",
                "address": "ADDRESS-55",
            },
            "capacity": 5,
        },
        headers=world.headers(),
    )
    assert created.status_code == 201, created.text
    provider = created.json()
    assert provider["contact"]["email"] == "secret@clinic.kh"
    staff = world.provider_staff(provider)
    h = {**world.headers(), "X-Request-ID": "req-events-1"}

    async def refer(**kw: object) -> dict:
        child = await world.child(consent=not kw.pop("no_consent", False))
        body = {"child_id": child, "service_type": "health", "reason": "REASON-42", **kw}
        r = await world.api.post("/v1/referrals", json=body, headers=h)
        assert r.status_code == 201, r.text
        return dict(r.json())

    completed = await refer(urgency="high")
    await world.api.post(f"/v1/referrals/{completed['id']}/accept", headers=staff)
    done = await world.api.post(
        f"/v1/referrals/{completed['id']}/complete",
        json={"outcome": {"code": "referred_on", "note": "NOTE-77"}},
        headers=staff,
    )
    assert done.status_code == 200
    declined = await refer(urgency="emergency")
    r = await world.api.post(
        f"/v1/referrals/{declined['id']}/decline", json={"reason": "DECLINE-13"}, headers=staff
    )
    assert r.json()["rerouted_to"] is None
    cancelled = await refer(no_consent=True, consent_override={"justification": "JUSTIFY-88"})
    await world.api.post(
        f"/v1/referrals/{cancelled['id']}/cancel", json={"reason": "CANCEL-21"}, headers=h
    )
    patched = await world.api.patch(
        f"/v1/referrals/providers/{provider['id']}",
        json={"name": "Renamed NAME-91", "capacity": 6},
        headers={**world.headers(), "If-Match": '"1"'},
    )
    assert patched.status_code == 200

    referral_ids = {completed["id"], declined["id"], cancelled["id"]}
    events = await wait_for_events(
        nats_url,
        referral_ids | {provider["id"]},
        {
            "referrals.provider.upserted.v1",
            "referrals.referral.created.v1",
            "referrals.referral.accepted.v1",
            "referrals.referral.completed.v1",
            "referrals.referral.declined.v1",
            "referrals.referral.cancelled.v1",
        },
        9,
    )
    assert Counter(e["type"].split(".", 1)[1] for e in events) == {
        "provider.upserted.v1": 2,
        "referral.created.v1": 3,
        "referral.accepted.v1": 1,
        "referral.completed.v1": 1,
        "referral.declined.v1": 1,
        "referral.cancelled.v1": 1,
    }
    for event in events:
        assert "NAME-91" not in json.dumps(event)
        for secret in SECRETS:
            assert secret not in json.dumps(event), (secret, event["type"])
        assert event["specversion"] == "1.0"
        assert event["source"] == "/services/referrals"
        assert event["_msg_id"] == event["id"]
        if event["type"].startswith("referrals.referral."):
            data = event["data"]
            assert set(data) == REFERRAL_FIELDS
            assert event["subject"] == data["referral_id"]
            assert data["commune_code"] == p.commune
            assert data["village_code"] == p.village
            assert data["provider_org"] == staff_org
            assert data["referrer_org"] == "moswvy-test"
            verb = event["type"].split(".")[2]
            assert data["status"] == {"created": "pending"}.get(verb, verb)
            if event["type"] != "referrals.referral.completed.v1":
                assert data["outcome_code"] is None
        else:
            assert set(event["data"]) == PROVIDER_FIELDS
            assert event["subject"] == provider["id"]

    by_type = {(e["subject"], e["type"].split(".")[2]): e for e in events}
    done_event = by_type[(completed["id"], "completed")]["data"]
    assert done_event["outcome_code"] == "referred_on"
    assert done_event["version"] == 3
    assert done_event["urgency"] == "high"
    created_event = by_type[(completed["id"], "created")]
    assert created_event["requestid"] == "req-events-1"
    assert created_event["data"]["consent_override"] is False
    assert by_type[(cancelled["id"], "cancelled")]["data"]["consent_override"] is True
    provider_versions = sorted(
        e["data"]["version"] for e in events if e["subject"] == provider["id"]
    )
    assert provider_versions == [1, 2]
