"""The rules of webhooks alone: signing (checked with the Standard Webhooks reference
library), secrets and their rotation, what a delivery says, back-off and its verdicts, and
who may see a record (the API's rule, libs.common.access)."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.common.access import Share
from libs.common.auth import Principal
from services.webhooks import domain
from services.webhooks.domain import ChildFacts, GrantFacts, Policy, ReferralFacts, Result

NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    secret = domain.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    assert domain.new_secret() != secret


def test_a_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = domain.new_secret()
    msg_id = str(uuid.uuid4())
    body = domain.delivery_body("webhook.test", NOW, {"endpoint_id": "x"})
    headers = domain.headers(msg_id, int(time.time()), body, [secret])
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(domain.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("x", "y"), headers)


def test_after_a_rotation_both_secrets_sign_for_24_hours() -> None:
    old, new = domain.new_secret(), domain.new_secret()
    until = NOW + domain.PREVIOUS_SECRET_SIGNS_FOR
    assert domain.signing_secrets(new, old, until, NOW) == [new, old]
    assert domain.signing_secrets(new, old, until, until + timedelta(seconds=1)) == [new]
    assert domain.signing_secrets(new, None, None, NOW) == [new]
    body = '{"type":"webhook.test"}'
    headers = domain.headers("msg_1", int(time.time()), body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


def test_a_delivery_holds_ids_and_codes_only() -> None:
    child = {
        "child_id": "c1",
        "case_number": "120101-0000001",
        "commune_code": "120101",
        "village_code": "12010101",
        "sex": "female",
        "birth_month": "2015-04",
        "vulnerabilities": ["out_of_school"],
        "risk_level": "high",
        "status": "open",
        "owner_org": "ngo-a",
        "data_sharing_consent": True,
        "version": 3,
        "registered_on": "2026-11-01",
        "changed": ["risk_level"],
    }
    data = domain.delivery_data("registry.child.updated.v1", child)
    assert data == {
        "child_id": "c1",
        "commune_code": "120101",
        "village_code": "12010101",
        "status": "open",
        "version": 3,
        "changed": ["risk_level"],
    }
    grant = {
        "grant_id": "g",
        "child_id": "c",
        "fund_id": "f",
        "category": "education_support",
        "status": "approved",
        "commune_code": "120101",
        "version": 2,
        "amount_khr": 5,
        "shock": None,
        "repeat_within_30_days": False,
        "requested_org": "ngo-a",
    }
    assert set(domain.delivery_data("funds.grant.approved.v1", grant)) == {
        "grant_id",
        "child_id",
        "fund_id",
        "category",
        "status",
        "commune_code",
        "version",
    }
    body = json.loads(domain.delivery_body("registry.child.updated.v1", NOW, data))
    assert body == {
        "type": "registry.child.updated.v1",
        "timestamp": "2026-12-03T04:00:00Z",
        "data": data,
    }


def test_back_off_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(3600.0, 5.0 * 2 ** (attempt - 1))
        delays = [domain.retry_delay(attempt, 5.0, 3600.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole range is used
    assert domain.retry_delay(10_000, 5.0, 3600.0) <= 3600.0


POLICY = Policy(
    retry_base_s=5,
    retry_cap_s=3600,
    retry_window=timedelta(days=3),
    disable_after=timedelta(days=5),
)


def test_verdicts() -> None:
    started = NOW - timedelta(hours=1)
    ok = domain.verdict(
        Result(204, 12),
        attempt=3,
        round_started_at=started,
        failing_since=NOW - timedelta(hours=1),
        now=NOW,
        policy=POLICY,
    )
    assert (ok.status, ok.failing_since, ok.disable) == ("delivered", None, None)
    gone = domain.verdict(
        Result(410, 5),
        attempt=1,
        round_started_at=started,
        failing_since=None,
        now=NOW,
        policy=POLICY,
    )
    assert (gone.status, gone.disable) == ("failed", "gone")
    for result in (Result(500, 3), Result(None, 10_000, "timeout"), Result(301, 2)):
        again = domain.verdict(
            result, attempt=4, round_started_at=started, failing_since=None, now=NOW, policy=POLICY
        )
        assert again.status == "pending"
        assert again.failing_since == NOW
        assert again.next_attempt_at is not None
        assert NOW <= again.next_attempt_at <= NOW + timedelta(seconds=40)
    late = domain.verdict(
        Result(500, 3),
        attempt=90,
        round_started_at=NOW - timedelta(days=3),
        failing_since=NOW - timedelta(days=3),
        now=NOW,
        policy=POLICY,
    )
    assert (late.status, late.disable) == ("failed", None)
    dead = domain.verdict(
        Result(503, 3),
        attempt=2,
        round_started_at=NOW,
        failing_since=NOW - timedelta(days=5),
        now=NOW,
        policy=POLICY,
    )
    assert dead.disable == "failing"


def principal(
    org: str,
    org_type: str = "partner",
    areas: tuple[str, ...] = ("120101",),
    scopes: tuple[str, ...] = ("registry:read", "referrals:read", "funds:read"),
) -> Principal:
    return Principal(
        sub=f"{org}-client", org=org, org_type=org_type, scopes=frozenset(scopes), areas=areas
    )


CHILD = ChildFacts("120101", "12010101", "ngo-owner")


def test_children_follow_the_api_rule() -> None:
    owner, clinic, rival = principal("ngo-owner"), principal("ngo-clinic"), principal("ngo-x")
    government = principal("moh", "government", ("1201",))
    elsewhere = principal("ccwc", "government", ("120109",))
    assert domain.may_see(owner, "child", CHILD, [], NOW)
    assert domain.may_see(government, "child", CHILD, [], NOW)
    assert not domain.may_see(elsewhere, "child", CHILD, [], NOW)
    assert not domain.may_see(rival, "child", CHILD, [], NOW)
    pending = [Share("ngo-clinic", "pending")]
    accepted = [Share("ngo-clinic", "accepted")]
    cancelled = [Share("ngo-clinic", "cancelled")]
    recent = [Share("ngo-clinic", "completed", NOW - timedelta(days=29))]
    old = [Share("ngo-clinic", "completed", NOW - timedelta(days=31))]
    assert not domain.may_see(clinic, "child", CHILD, pending, NOW)
    assert domain.may_see(clinic, "child", CHILD, accepted, NOW)
    assert not domain.may_see(clinic, "child", CHILD, cancelled, NOW)
    assert domain.may_see(clinic, "child", CHILD, recent, NOW)
    assert not domain.may_see(clinic, "child", CHILD, old, NOW)
    # no registry:read, nothing about children
    blind = principal("ngo-owner", scopes=("referrals:read",))
    assert not domain.may_see(blind, "child", CHILD, [], NOW)
    assert domain.missing_scopes(blind.scopes, ["registry.child.updated.v1"]) == ["registry:read"]


def test_referrals_and_grants_follow_their_services_rules() -> None:
    referral = ReferralFacts("120101", None, "ngo-clinic", "ngo-owner")
    assert domain.may_see(principal("ngo-clinic"), "referral", referral)
    assert domain.may_see(principal("ngo-owner"), "referral", referral)
    assert not domain.may_see(principal("ngo-x"), "referral", referral)
    assert not domain.may_see(principal("gov", "government", ("120109",)), "referral", referral)
    grant = GrantFacts("120101", "ngo-req", CHILD)
    assert domain.may_see(principal("ngo-owner"), "grant", grant, [], NOW)
    assert domain.may_see(principal("ngo-req"), "grant", grant, [], NOW)  # requested it
    assert not domain.may_see(principal("ngo-x"), "grant", grant, [], NOW)
    unknown_child = GrantFacts("120101", "ngo-req", None)
    assert domain.may_see(principal("ngo-req"), "grant", unknown_child, [], NOW)
    assert domain.may_see(principal("g", "government"), "grant", unknown_child, [], NOW)
    assert not domain.may_see(principal("ngo-owner"), "grant", unknown_child, [], NOW)
    assert not domain.may_see(principal("ngo-owner"), "grant", None, [], NOW)
    assert domain.may_see(principal("anyone"), None, None)  # a test delivery
