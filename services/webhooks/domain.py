"""The rules of webhooks, pure functions without I/O: which events an endpoint may subscribe
to, what a delivery says (ids and codes only), how it is signed (Standard Webhooks), when it
is tried again, and whether the endpoint's owner may see the record it is about (the same
rule as the API: libs.common.access)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common import access
from libs.common.auth import Principal
from libs.common.events.casework_events import CASEWORK_EVENTS
from libs.common.events.funds_events import FUNDS_EVENTS
from libs.common.events.registry_events import REGISTRY_EVENTS

# ---------------------------------------------------------------- what may be subscribed to

CHILD_TYPES = tuple(t for t in REGISTRY_EVENTS if t.startswith("registry.child."))
REFERRAL_TYPES = access.REFERRAL_EVENT_TYPES
GRANT_TYPES = tuple(t for t in FUNDS_EVENTS if t.startswith("funds.grant."))
# A child's casework: assignments, visits, overdue flags, plans (workers' own changes are in
# the casework feed, not here).
CASEWORK_TYPES = tuple(t for t in CASEWORK_EVENTS if not t.startswith("casework.worker."))
EVENT_TYPES = (*CHILD_TYPES, *REFERRAL_TYPES, *GRANT_TYPES, *CASEWORK_TYPES)
TEST_TYPE = "webhook.test"

RECORD_TYPES = ("child", "referral", "grant", "casework")
# The record an event type is about, and the scope its owner needs to read such records.
# A child's casework is seen by whoever may see the child, with casework:read.
RECORD_OF = {
    **dict.fromkeys(CHILD_TYPES, "child"),
    **dict.fromkeys(REFERRAL_TYPES, "referral"),
    **dict.fromkeys(GRANT_TYPES, "grant"),
    **dict.fromkeys(CASEWORK_TYPES, "casework"),
}
READ_SCOPE = {
    "child": "registry:read",
    "referral": "referrals:read",
    "grant": "funds:read",
    "casework": "casework:read",
}

DELIVERY_STATUSES = ("pending", "delivered", "failed", "dropped")
DISABLED_REASONS = ("manual", "gone", "failing")


def missing_scopes(scopes: Iterable[str], event_types: Iterable[str]) -> list[str]:
    """The read scopes a principal lacks for the records of the event types (sorted)."""
    held = set(scopes)
    needed = {READ_SCOPE[RECORD_OF[t]] for t in event_types}
    return sorted(needed - held)


# ---------------------------------------------------------------- what a delivery says

_CHILD_FIELDS = ("child_id", "commune_code", "village_code", "status", "version")
_REFERRAL_FIELDS = (
    "referral_id",
    "child_id",
    "service_type",
    "urgency",
    "status",
    "provider_id",
    "overdue",
    "outcome_code",
    "commune_code",
    "version",
)
_GRANT_FIELDS = (
    "grant_id",
    "child_id",
    "fund_id",
    "category",
    "status",
    "commune_code",
    "version",
)
_CASEWORK_FIELDS = (
    "child_id",
    "commune_code",
    "assignment_id",
    "worker_id",
    "status",
    "started_on",
    "ended_on",
    "visit_id",
    "date",
    "kind",
    "outcome",
    "next_visit_on",
    "followups_made",
    "due_on",
    "overdue",
    "version",
)
_FIELDS = {
    "child": _CHILD_FIELDS,
    "referral": _REFERRAL_FIELDS,
    "grant": _GRANT_FIELDS,
    "casework": _CASEWORK_FIELDS,
}


def delivery_data(event_type: str, data: Mapping[Any, Any]) -> dict[str, Any]:
    """The `data` of a delivery: the event's ids and codes, never anything else (no name,
    phone, birth month, amount or free text: the receiver reads the record through the
    API). An update names the fields that changed, never their values."""
    kind = RECORD_OF[event_type]
    out = {f: data.get(f) for f in _FIELDS[kind] if kind != "casework" or f in data}
    if kind == "child" and "changed" in data:
        out["changed"] = list(data["changed"])
    return out


def rfc3339(at: datetime) -> str:
    """An instant as RFC 3339 in UTC with a Z."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def delivery_body(event_type: str, at: datetime, data: Mapping[Any, Any]) -> str:
    """The exact JSON text sent on every attempt: `{type, timestamp, data}`."""
    doc = {"type": event_type, "timestamp": rfc3339(at), "data": dict(data)}
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


# ---------------------------------------------------------------- signing (Standard Webhooks)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
PREVIOUS_SECRET_SIGNS_FOR = timedelta(hours=24)


def new_secret() -> str:
    """A new signing secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the secret's key (the base64
    after `whsec_`), as the Standard Webhooks specification signs."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signing_secrets(
    secret: str, previous: str | None, previous_until: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, and the one before it for 24 h after a
    rotation."""
    if previous and previous_until is not None and now < previous_until:
        return [secret, previous]
    return [secret]


def headers(msg_id: str, timestamp: int, body: str, signing: Sequence[str]) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (one signature per signing secret,
    space-separated)."""
    return {
        "content-type": "application/json",
        "user-agent": "Komar-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in signing),
    }


# ---------------------------------------------------------------- tries and their outcome


def retry_delay(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempt - 1, 0), 60))
    return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class Result:
    """What one attempt came to: a status code (None when no answer came), the time to the
    answer, and the error class when it failed without one."""

    status_code: int | None
    latency_ms: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


@dataclass(frozen=True)
class Policy:
    """How long and how often failed deliveries are tried again."""

    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    retry_window: timedelta = timedelta(days=3)
    disable_after: timedelta = timedelta(days=5)


@dataclass(frozen=True)
class Verdict:
    """What follows an attempt: the delivery's new status (and when to try again), and the
    endpoint's failing-since and whether it is now disabled (and why)."""

    status: str
    next_attempt_at: datetime | None
    failing_since: datetime | None
    disable: str | None = None


def verdict(
    result: Result,
    *,
    attempt: int,
    round_started_at: datetime,
    failing_since: datetime | None,
    now: datetime,
    policy: Policy,
    rng: random.Random | None = None,
) -> Verdict:
    """2xx delivers (the endpoint is no longer failing); 410 fails the delivery and
    disables the endpoint; anything else is tried again after `retry_delay`, until the
    retry window has passed since the round began, and an endpoint failing without a
    break for `disable_after` is disabled."""
    if result.delivered:
        return Verdict("delivered", None, None)
    if result.gone:
        return Verdict("failed", None, failing_since or now, disable="gone")
    since = failing_since or now
    disable = "failing" if now - since >= policy.disable_after else None
    if now - round_started_at >= policy.retry_window:
        return Verdict("failed", None, since, disable)
    delay = retry_delay(attempt, policy.retry_base_s, policy.retry_cap_s, rng)
    return Verdict("pending", now + timedelta(seconds=delay), since, disable)


# ---------------------------------------------------------------- who may see the record


def owner_of(endpoint: Mapping[Any, Any]) -> Principal:
    """The principal whose access decides what an endpoint receives."""
    return Principal(
        sub=endpoint["owner_sub"],
        org=endpoint["org"],
        org_type=endpoint["owner_org_type"],
        scopes=frozenset(endpoint["owner_scopes"]),
        areas=tuple(endpoint["owner_areas"]),
    )


@dataclass(frozen=True)
class ChildFacts:
    """A child's place and owner (from an event or the projection)."""

    commune: str
    village: str | None
    owner_org: str


@dataclass(frozen=True)
class ReferralFacts:
    """A referral's place (the child's when referred) and its two organisations."""

    commune: str
    village: str | None
    provider_org: str
    referrer_org: str


@dataclass(frozen=True)
class GrantFacts:
    """A grant's commune and requesting organisation, and its child when known."""

    commune: str
    requested_org: str | None
    child: ChildFacts | None


Facts = ChildFacts | ReferralFacts | GrantFacts


def sees_child(
    principal: Principal,
    child: ChildFacts,
    shares: Iterable[access.Share],
    now: datetime | None = None,
) -> bool:
    """libs.common.access.sees_child: the registry's rule."""
    return access.sees_child(
        principal,
        commune=child.commune,
        village=child.village,
        owner_org=child.owner_org,
        shares=shares,
        now=now,
    )


def sees_referral(principal: Principal, referral: ReferralFacts) -> bool:
    """The referrals service's rule: the areas cover the referral's place; a partner must
    also be the provider's or the referrer's organisation."""
    if not principal.covers_place(referral.commune, referral.village):
        return False
    return not principal.is_partner or principal.org in (
        referral.provider_org,
        referral.referrer_org,
    )


def sees_grant(
    principal: Principal,
    grant: GrantFacts,
    shares: Iterable[access.Share],
    now: datetime | None = None,
) -> bool:
    """The funds service's rule: whoever may read the grant's child, and a partner whose
    areas cover the child's place and who requested the grant. A child not known yet here
    is placed at the grant's commune, and only its requester or government staff covering
    it see the grant."""
    child = grant.child
    if child is None:
        if not principal.covers_place(grant.commune, None):
            return False
        return not principal.is_partner or grant.requested_org == principal.org
    if sees_child(principal, child, shares, now):
        return True
    return (
        principal.is_partner
        and grant.requested_org == principal.org
        and principal.covers_place(child.commune, child.village)
    )


def may_see(
    principal: Principal,
    record_type: str | None,
    facts: Facts | None,
    shares: Iterable[access.Share] = (),
    now: datetime | None = None,
) -> bool:
    """Whether the endpoint's owner may see the record now (a test delivery is about no
    record). Without the scope to read such records, it may not."""
    if record_type is None:
        return True
    if facts is None or READ_SCOPE[record_type] not in principal.scopes:
        return False
    if isinstance(facts, ChildFacts):
        return sees_child(principal, facts, shares, now)
    if isinstance(facts, ReferralFacts):
        return sees_referral(principal, facts)
    return sees_grant(principal, facts, shares, now)
