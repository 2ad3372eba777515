"""Events the registry consumes: referrals open and close a provider's view of a child, and
casework assignments a worker's (libs.common.access)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.events import CloudEvent
from libs.common.events.casework_events import AssignmentV1, WorkerUpsertedV1
from libs.common.events.consumer import Handlers, handle
from libs.common.events.referrals_events import ReferralV1
from services.registry.models import referral_access, worker_accounts


async def referral_changed(conn: AsyncConnection, event: CloudEvent, referral: ReferralV1) -> None:
    """Keep the referral's state: its provider's organisation reads the child while the
    referral is accepted, or completed less than 30 days ago (libs.common.access)."""
    await access.apply_referral_event(conn, referral_access, event, referral)


async def referrals_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, ReferralV1]]
) -> None:
    """A batch of referral events in one statement: each referral's newest version."""
    await access.apply_referral_events(conn, referral_access, events)


REFERRAL_HANDLERS: Handlers = handle(
    access.REFERRAL_EVENT_TYPES, ReferralV1, referral_changed, batch=referrals_changed
)


async def workers_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, WorkerUpsertedV1]]
) -> None:
    """Which account is which worker (each worker's newest version)."""
    await access.apply_worker_events(conn, worker_accounts, events)


async def worker_changed(
    conn: AsyncConnection, event: CloudEvent, worker: WorkerUpsertedV1
) -> None:
    await workers_changed(conn, [(event, worker)])


async def assignments_changed(
    conn: AsyncConnection, events: Sequence[tuple[CloudEvent, AssignmentV1]]
) -> None:
    """An assignment lets its worker's account read the child until it ends."""
    await access.apply_assignment_events(conn, referral_access, events)


async def assignment_changed(
    conn: AsyncConnection, event: CloudEvent, assignment: AssignmentV1
) -> None:
    await assignments_changed(conn, [(event, assignment)])


WORKER_HANDLERS: Handlers = handle(
    ["casework.worker.upserted.v1"], WorkerUpsertedV1, worker_changed, batch=workers_changed
)
ASSIGNMENT_HANDLERS: Handlers = handle(
    ["casework.assignment.started.v1", "casework.assignment.ended.v1"],
    AssignmentV1,
    assignment_changed,
    batch=assignments_changed,
)
