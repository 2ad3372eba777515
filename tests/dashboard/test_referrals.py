"""The referrals pages' pure helpers: the queue's filters, whose side a referral is on,
which answers a user is offered, and the forms' bodies."""

from __future__ import annotations

from typing import Any

from dashboard.client import ApiProblem
from dashboard.i18n import translator
from dashboard.pages.referrals import (
    action_body,
    explain_problem,
    on_side,
    queue_filters,
    referral_actions,
    referral_body,
    side_of,
)

t = translator("en")
KM = translator("km")
ORG = "ccwc-120101"
CLINIC = "ngo-clinic"


def referral(
    status: str = "pending", provider: str = CLINIC, referrer: str = ORG
) -> dict[str, Any]:
    return {
        "status": status,
        "provider_org": provider,
        "referred_by": {"sub": "usr_1", "org": referrer},
    }


def test_queue_filters_keep_only_what_the_api_knows() -> None:
    query = {
        "status": "pending",
        "service_type": "health",
        "overdue": "true",
        "side": "made",
        "cursor": "x",
    }
    assert queue_filters(query) == {
        "status": "pending",
        "service_type": "health",
        "overdue": "true",
        "side": "made",
    }
    bad = {"status": "open' OR 1=1", "service_type": "spa", "overdue": "yes", "side": "theirs"}
    assert queue_filters(bad) == {}
    assert queue_filters({"side": "all"}) == {}


def test_side_of_a_referral() -> None:
    assert side_of(referral(), CLINIC) == "to_answer"
    assert side_of(referral(), ORG) == "made"
    assert side_of(referral(), "another") is None
    # An organisation that refers to itself answers it.
    assert side_of(referral(provider=ORG), ORG) == "to_answer"


def test_on_side_filters_for_presentation_only() -> None:
    mine, theirs = referral(), referral(provider="x", referrer="y")
    assert on_side(mine, ORG, None)
    assert on_side(theirs, ORG, None)
    assert on_side(mine, ORG, "made")
    assert not on_side(theirs, ORG, "made")
    assert on_side(mine, CLINIC, "to_answer")
    assert not on_side(mine, ORG, "to_answer")


def test_the_provider_answers_a_pending_referral() -> None:
    scopes = frozenset({"referrals:read", "referrals:respond"})
    assert referral_actions(referral("pending"), CLINIC, scopes) == ["accept", "decline"]
    assert referral_actions(referral("accepted"), CLINIC, scopes) == ["complete"]
    for done in ("completed", "declined", "cancelled"):
        assert referral_actions(referral(done), CLINIC, scopes) == []


def test_no_answer_without_the_scope_or_for_another_provider() -> None:
    assert referral_actions(referral(), CLINIC, frozenset({"referrals:read"})) == []
    respond = frozenset({"referrals:respond"})
    assert referral_actions(referral(), "another-ngo", respond) == []


def test_the_referrer_cancels_while_it_is_open() -> None:
    write = frozenset({"referrals:read", "referrals:write"})
    assert referral_actions(referral("pending"), ORG, write) == ["cancel"]
    assert referral_actions(referral("accepted"), ORG, write) == ["cancel"]
    assert referral_actions(referral("completed"), ORG, write) == []
    assert referral_actions(referral("pending"), "another", write) == []
    assert referral_actions(referral("pending"), ORG, frozenset({"referrals:read"})) == []


def test_referral_body_from_the_form() -> None:
    form = {
        "child_id": "c1",
        "service_type": "health",
        "urgency": "high",
        "reason": "  Fever\n for a week ",
        "provider_id": "",
        "consent_justification": "",
    }
    body, errors = referral_body(form, t)
    assert errors == []
    assert body == {
        "child_id": "c1",
        "service_type": "health",
        "urgency": "high",
        "reason": "Fever\n for a week",
    }
    body, _ = referral_body({**form, "provider_id": "p1", "consent_justification": "Danger"}, t)
    assert body["provider_id"] == "p1"
    assert body["consent_override"] == {"justification": "Danger"}


def test_referral_body_names_what_is_wrong() -> None:
    _, errors = referral_body({"service_type": "spa", "urgency": "soon", "reason": " "}, t)
    assert {e["field"] for e in errors} == {"service_type", "urgency", "reason"}
    _, errors = referral_body({"service_type": "health", "reason": "x" * 1001}, t)
    assert [e["field"] for e in errors] == ["reason"]
    body, errors = referral_body({"service_type": "health", "reason": "ok"}, t)
    assert errors == []
    assert body["urgency"] == "normal"


def test_answer_bodies() -> None:
    assert action_body("accept", {}, t) == ({}, [])
    body, errors = action_body("decline", {"decline_reason": " Full "}, t)
    assert body == {"reason": "Full"}
    assert errors == []
    _, errors = action_body("cancel", {"cancel_reason": ""}, t)
    assert errors[0]["field"] == "cancel_reason"
    body, errors = action_body("complete", {"outcome_code": "service_provided"}, t)
    assert body == {"outcome": {"code": "service_provided"}}
    assert errors == []
    body, _ = action_body("complete", {"outcome_code": "other", "outcome_note": "Moved"}, t)
    assert body == {"outcome": {"code": "other", "note": "Moved"}}
    _, errors = action_body("complete", {"outcome_code": "fine"}, t)
    assert errors[0]["field"] == "outcome_code"


def test_the_everyday_refusals_are_told_in_the_users_language() -> None:
    gap = ApiProblem(
        422,
        "Unprocessable",
        "no active provider of shelter with free capacity serves Phum Muoy (12010101)",
        [{"field": "service_type", "message": "no provider available at 12010101"}],
    )
    message, errors = explain_problem(gap, "shelter", KM)
    assert "ទីជម្រក" in message
    assert errors == [{"field": "service_type", "message": message}]
    consent = ApiProblem(
        422,
        "Unprocessable",
        "send consent_override.justification",
        [{"field": "consent_override", "message": "required"}],
    )
    message, errors = explain_problem(consent, "health", t)
    assert "consented" in message
    assert errors[0]["field"] == "consent_override"
    other = ApiProblem(
        422, "Unprocessable", "reason: too long", [{"field": "reason", "message": "too long"}]
    )
    assert explain_problem(other, "health", t) == (
        "reason: too long",
        [{"field": "reason", "message": "too long"}],
    )
