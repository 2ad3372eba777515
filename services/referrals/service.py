"""The referrals use cases: each runs in the caller's transaction and returns what to answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.context import Context
from libs.common.errors import Conflict, NotFound, found
from libs.common.events import CloudEvent, new_event
from libs.common.events.outbox import write_events
from libs.common.http import check_if_match
from libs.common.logging import get_logger
from services.referrals import SERVICE, domain, store
from services.referrals.domain import Candidate
from services.referrals.models import outbox
from services.referrals.schemas import ProviderIn, ProviderPatch, ReferralIn

log = get_logger(__name__)

CHILD_NOT_FOUND = (
    "no such child visible to you (a child registered moments ago may not have "
    "reached the referrals service yet: try again shortly)"
)


def _provider_changed(ctx: Context, provider: store.Row) -> None:
    ctx.emit(
        "referrals.provider.upserted.v1",
        str(provider["id"]),
        domain.provider_event_data(provider),
    )


def _referral_changed(ctx: Context, verb: str, referral: store.Row) -> None:
    ctx.events.append(_referral_event(verb, referral, ctx.request_id))


def _referral_event(verb: str, referral: store.Row, request_id: str | None) -> CloudEvent:
    return new_event(
        SERVICE,
        f"referrals.referral.{verb}.v1",
        str(referral["id"]),
        domain.referral_event_data(referral),
        request_id,
    )


# ---------------------------------------------------------------- providers


def _contact(contact: Any) -> dict[str, Any] | None:
    return None if contact is None else contact.model_dump(mode="json", exclude_none=True)


async def create_provider(conn: AsyncConnection, body: ProviderIn, ctx: Context) -> store.Row:
    """Put a provider on the map."""
    areas = domain.unique_sorted(body.areas)
    domain.may_manage_provider(ctx.principal, body.org, areas)
    provider = await store.insert_provider(
        conn,
        {
            "id": uuid.uuid4(),
            "name": body.name,
            "org": body.org,
            "service_types": domain.unique_sorted([s.value for s in body.service_types]),
            "areas": areas,
            "contact": _contact(body.contact),
            "capacity": body.capacity,
            "active": body.active,
            "created_by": ctx.principal.sub,
        },
    )
    _provider_changed(ctx, provider)
    await ctx.write_events(conn, outbox)
    return provider


async def read_provider(
    conn: AsyncConnection, provider_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> store.Row:
    """A provider serving somewhere in the principal's areas; 404 otherwise."""
    return found(await store.get_provider(conn, provider_id, principal, lock=lock), "provider")


async def _managed_provider(
    conn: AsyncConnection, provider_id: uuid.UUID, if_match: str | None, ctx: Context
) -> store.Row:
    """Lock a provider the principal manages, at the version the client read."""
    provider = await read_provider(conn, provider_id, ctx.principal, lock=True)
    check_if_match(if_match, provider["version"])
    domain.may_manage_provider(ctx.principal, provider["org"], provider["areas"])
    return provider


async def patch_provider(
    conn: AsyncConnection,
    provider_id: uuid.UUID,
    change: ProviderPatch,
    if_match: str,
    ctx: Context,
) -> store.Row:
    """Apply a merge patch to the version the client read."""
    provider = await _managed_provider(conn, provider_id, if_match, ctx)
    values = change.model_dump(mode="json", exclude_unset=True)
    if "areas" in values:
        values["areas"] = domain.unique_sorted(values["areas"])
        domain.may_manage_provider(ctx.principal, provider["org"], values["areas"])
    if "service_types" in values:
        values["service_types"] = domain.unique_sorted(values["service_types"])
    if "contact" in values:
        values["contact"] = _contact(change.contact)
    if "capacity" in values and values["capacity"] < provider["open_referrals"]:
        raise Conflict(
            f"capacity {values['capacity']} is below the {provider['open_referrals']} open "
            "referrals the provider holds; set active to false to stop new referrals instead",
            errors=[{"field": "capacity", "message": "below the open referrals"}],
        )
    updated = await store.update_provider(conn, provider_id, provider["version"], values)
    _provider_changed(ctx, updated)
    await ctx.write_events(conn, outbox)
    return updated


async def deactivate_provider(
    conn: AsyncConnection, provider_id: uuid.UUID, if_match: str | None, ctx: Context
) -> store.Row:
    """Take a provider off routing; its open referrals stay with it. Repeating is a no-op."""
    provider = await _managed_provider(conn, provider_id, if_match, ctx)
    if not provider["active"]:
        return provider
    updated = await store.update_provider(conn, provider_id, provider["version"], {"active": False})
    _provider_changed(ctx, updated)
    await ctx.write_events(conn, outbox)
    return updated


# ---------------------------------------------------------------- routing


async def _route(
    conn: AsyncConnection,
    service_type: str,
    place: tuple[str, ...],
    exclude: list[uuid.UUID],
    release: uuid.UUID,
) -> store.Row | None:
    """Pass a referral that `release` gives back in the same transaction (a decline) on to
    the best provider for the service at the place (domain.path_of): it counts in that
    provider's load instead of `release`'s. None when none is left (it then only leaves
    `release`'s load). Both rows are locked in id order, so routers never deadlock; an
    attempt that finds its choice unable to take it once locked (full, deactivated
    meanwhile) is rolled back whole and the next provider tried."""
    rows = await store.routing_candidates(conn, service_type, place, exclude)
    ranked = domain.rank_providers([Candidate.of(r) for r in rows], service_type, place, exclude)
    for candidate in ranked:
        attempt = await conn.begin_nested()
        locked = await store.lock_providers(conn, [candidate.id, release])
        chosen = locked.get(candidate.id)
        if chosen is None or domain.ineligibility(Candidate.of(chosen), service_type, place):
            await attempt.rollback()  # releases the locks taken in this attempt
            continue
        await store.change_open_referrals(conn, candidate.id, +1)
        await store.change_open_referrals(conn, release, -1)
        await attempt.commit()
        return chosen
    await _release(conn, release)
    return None


async def _insert_routed(
    conn: AsyncConnection,
    row: dict[str, Any],
    due_in: timedelta,
    service_type: str,
    place: tuple[str, ...],
    candidates: list[dict[str, Any]],
) -> store.Row | None:
    """Insert a new referral (`row`, its provider aside, due in `due_in`) with the best of
    the candidates (providers as store.child_to_refer reads them) for the service at the
    place (domain.path_of), counted in that provider's load; None when none is left. Each
    choice is claimed and the referral inserted in one statement; a provider found unable
    to take it once locked (full, deactivated meanwhile) is skipped."""
    ranked = domain.rank_providers([Candidate.of(r) for r in candidates], service_type, place)
    for candidate in ranked:
        referral = await store.insert_routed_referral(
            conn, row, due_in, candidate.id, service_type, place
        )
        if referral is not None:
            return referral
    return None


async def _claim_named(
    conn: AsyncConnection, provider_id: uuid.UUID, service_type: str, place: tuple[str, ...]
) -> store.Row:
    """The provider the referrer chose, if it can take the referral (422 otherwise)."""
    provider = (await store.lock_providers(conn, [provider_id])).get(provider_id)
    if provider is None:
        raise domain.named_provider_problem(f"no such provider serves {place[0]}")
    why = domain.ineligibility(Candidate.of(provider), service_type, place)
    if why is not None:
        raise domain.named_provider_problem(why)
    await store.change_open_referrals(conn, provider_id, +1)
    return provider


async def _release(conn: AsyncConnection, provider_id: uuid.UUID) -> None:
    """A referral stops counting in its provider's load."""
    await store.lock_providers(conn, [provider_id])
    await store.change_open_referrals(conn, provider_id, -1)


# ---------------------------------------------------------------- referrals


async def create_referral(conn: AsyncConnection, body: ReferralIn, ctx: Context) -> store.Row:
    """Refer a visible, open child for a service, routed unless a provider is named."""
    principal = ctx.principal
    service_type = body.service_type.value
    named = body.provider_id is not None
    found_child = await store.child_to_refer(
        conn, body.child_id, principal, None if named else service_type
    )
    if found_child is None:
        raise NotFound(CHILD_NOT_FOUND)
    child = found_child.child
    if child["status"] != "open":
        raise Conflict("the child's case is closed; reopen it in the registry to refer the child")
    justification = body.consent_override.justification if body.consent_override else None
    override = domain.consent_override(principal, child["data_sharing_consent"], justification)
    place = domain.place_of(child)
    path = domain.path_of(child)
    row = {
        "id": uuid.uuid4(),
        "child_id": child["id"],
        "service_type": service_type,
        "urgency": body.urgency.value,
        "reason": body.reason,
        "status": "pending",
        "commune_code": child["commune_code"],
        "village_code": child["village_code"],
        "place_code": place,
        "referrer_sub": principal.sub,
        "referrer_org": principal.org,
        "consent_override": override,
        "override_justification": justification if override else None,
        "override_by_sub": principal.sub if override else None,
        "override_by_org": principal.org if override else None,
    }
    due_in = domain.DEADLINES[body.urgency.value]
    referral: store.Row | None
    if body.provider_id is not None:
        provider = await _claim_named(conn, body.provider_id, service_type, path)
        referral = await store.insert_referral(
            conn, {**row, "provider_id": provider["id"], "provider_org": provider["org"]}, due_in
        )
    else:
        referral = await _insert_routed(
            conn, row, due_in, service_type, path, found_child.candidates
        )
        if referral is None:
            need = domain.UnmetNeed.of(child, service_type, body.urgency.value)
            raise domain.no_provider(need, place)
    _referral_changed(ctx, "created", referral)
    await ctx.write_events(conn, outbox)
    log.info(
        "referral.routed",
        referral_id=str(referral["id"]),
        provider_id=str(referral["provider_id"]),
        named=named,
    )
    return referral


async def record_unmatched(
    conn: AsyncConnection, need: domain.UnmetNeed, ctx: Context
) -> store.Row | None:
    """Count a need routing found no provider for (`domain.NoProvider`), in a transaction of
    its own once the request's is rolled back: once per child, service type and month
    (Cambodia time), with one `referrals.referral.unmatched.v1`. A repeat in the same month,
    even a concurrent one, writes nothing (None)."""
    at = await store.now(conn)
    recorded = await store.insert_unmatched_need(conn, domain.unmatched_need_row(need, at))
    if recorded is None:
        return None
    # Written alone: whatever the rolled-back work had emitted is not this transaction's.
    event = ctx.event(
        "referrals.referral.unmatched.v1",
        str(recorded["child_id"]),
        domain.unmatched_event_data(recorded),
    )
    await write_events(conn, outbox, [event])
    log.info(
        "referral.unmatched",
        child_id=str(recorded["child_id"]),
        service_type=recorded["service_type"],
        month=recorded["month"],
    )
    return recorded


async def read_referral(
    conn: AsyncConnection, referral_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> store.Row:
    """A visible referral; 404 otherwise."""
    return found(await store.get_referral(conn, referral_id, principal, lock=lock), "referral")


async def _save(
    conn: AsyncConnection,
    referral: store.Row,
    verb: str,
    changes: dict[str, Any],
    ctx: Context,
    stamped: str,
) -> store.Row:
    """Write the principal's change of a locked referral (and who acted), `stamped` (a
    column: accepted_at, closed_at) set to the transaction's clock, and emit
    `referrals.referral.<verb>.v1` with it."""
    acted = {"acted_by_sub": ctx.principal.sub, "acted_by_org": ctx.principal.org}
    updated = await store.update_referral(
        conn, referral["id"], referral["version"], {**changes, **acted}, (stamped,)
    )
    _referral_changed(ctx, verb, updated)
    return updated


async def _respond(
    conn: AsyncConnection, referral_id: uuid.UUID, action: str, if_match: str | None, ctx: Context
) -> tuple[store.Row, str]:
    """Lock a referral the principal's organisation provides; the state the action leads to."""
    referral = await read_referral(conn, referral_id, ctx.principal, lock=True)
    domain.may_respond(ctx.principal, referral)
    check_if_match(if_match, referral["version"])
    return referral, domain.transition(referral["status"], action)


async def accept(
    conn: AsyncConnection, referral_id: uuid.UUID, if_match: str | None, ctx: Context
) -> store.Row:
    """The provider takes the child on: without If-Match, in one statement when the
    referral is visible, the principal's organisation's and pending (changing nothing
    otherwise); else, or when it is not, as every response (`_respond`), which answers why."""
    updated = None
    if if_match is None:
        [(before, after)] = domain.TRANSITIONS["accept"].items()
        updated = await store.accept_at_once(conn, referral_id, ctx.principal, before, after)
        if updated is not None:
            _referral_changed(ctx, "accepted", updated)
    if updated is None:
        referral, status = await _respond(conn, referral_id, "accept", if_match, ctx)
        updated = await _save(conn, referral, "accepted", {"status": status}, ctx, "accepted_at")
    await ctx.write_events(conn, outbox)
    return updated


@dataclass
class Declined:
    referral: store.Row
    rerouted_to: store.Row | None


async def decline(
    conn: AsyncConnection, referral_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> Declined:
    """The provider declines; the referral goes on to the next provider when one is left."""
    referral, status = await _respond(conn, referral_id, "decline", if_match, ctx)
    declined = await _save(
        conn, referral, "declined", {"status": status, "decline_reason": reason}, ctx, "closed_at"
    )
    rerouted = None
    child = await store.get_child(conn, referral["child_id"])
    if child is None or child["status"] != "open":
        await _release(conn, referral["provider_id"])
    else:
        exclude = await store.chain_providers(conn, referral_id)
        provider = await _route(
            conn,
            referral["service_type"],
            domain.path_of(referral),
            exclude,
            referral["provider_id"],
        )
        if provider is not None:
            rerouted = await store.insert_referral(
                conn, _rerouted_row(referral, provider), domain.DEADLINES[referral["urgency"]]
            )
            _referral_changed(ctx, "created", rerouted)
    await ctx.write_events(conn, outbox)
    log.info(
        "referral.declined",
        referral_id=str(referral_id),
        rerouted_to=str(rerouted["id"]) if rerouted else None,
    )
    return Declined(declined, rerouted)


def _rerouted_row(referral: store.Row, provider: store.Row) -> dict[str, Any]:
    """The next referral of a chain: the same child, service, reason and referrer."""
    copied = (
        "child_id",
        "service_type",
        "urgency",
        "reason",
        "commune_code",
        "village_code",
        "place_code",
        "referrer_sub",
        "referrer_org",
        "consent_override",
        "override_justification",
        "override_by_sub",
        "override_by_org",
    )
    return {
        **{k: referral[k] for k in copied},
        "id": uuid.uuid4(),
        "provider_id": provider["id"],
        "provider_org": provider["org"],
        "status": "pending",
        "previous_referral_id": referral["id"],
    }


async def complete(
    conn: AsyncConnection,
    referral_id: uuid.UUID,
    outcome_code: str,
    note: str | None,
    if_match: str | None,
    ctx: Context,
) -> store.Row:
    """The provider reports the outcome of an accepted referral."""
    referral, status = await _respond(conn, referral_id, "complete", if_match, ctx)
    updated = await _save(
        conn,
        referral,
        "completed",
        {"status": status, "outcome_code": outcome_code, "outcome_note": note},
        ctx,
        "closed_at",
    )
    await _release(conn, referral["provider_id"])
    await ctx.write_events(conn, outbox)
    return updated


async def cancel(
    conn: AsyncConnection, referral_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> store.Row:
    """The referrer (or government staff of the place) withdraws the referral."""
    referral = await read_referral(conn, referral_id, ctx.principal, lock=True)
    domain.may_cancel(ctx.principal, referral)
    check_if_match(if_match, referral["version"])
    status = domain.transition(referral["status"], "cancel")
    updated = await _save(
        conn,
        referral,
        "cancelled",
        {"status": status, "cancel_reason": reason},
        ctx,
        "closed_at",
    )
    await _release(conn, referral["provider_id"])
    await ctx.write_events(conn, outbox)
    return updated


async def flag_overdue(conn: AsyncConnection, batch: int = 500) -> list[store.Row]:
    """Flag pending referrals past their due time, one overdue event each, exactly once."""
    flagged = await store.flag_overdue(conn, batch)
    await write_events(conn, outbox, [_referral_event("overdue", r, None) for r in flagged])
    for r in flagged:
        log.info("referral.overdue", referral_id=str(r["id"]), provider_id=str(r["provider_id"]))
    return flagged
