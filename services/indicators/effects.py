"""What an event means for the indicators: the flows it counts and the child or provider
version it makes known. No I/O."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from libs.common import places
from libs.common.events import CloudEvent
from libs.common.events.catalog import model_for
from libs.common.events.consumer import UnusableEvent
from libs.common.events.registry_events import CareSetting
from services.indicators.casework import (
    BASIC_COURSE,
    FOLLOWUP_MONTHS,
    Assignment,
    CaseloadChange,
    Followup,
    Reintegration,
    VisitFlag,
    WorkerVersion,
)
from services.indicators.catalogue import (
    GRANT_CATEGORIES,
    SERVICE_TYPES,
    SEXES,
    VISIT_KINDS,
    VULNERABILITIES,
    WORKER_ROLES,
    CellKey,
)
from services.indicators.dates import cambodia_month, date_month, month_index, periods_of
from services.indicators.geography import COMMUNE_LENGTH
from services.indicators.stocks import ChildState, ChildVersion, ProviderVersion, age_band


class InvalidEvent(UnusableEvent):
    """An event whose data cannot be counted (bad codes, unknown shape): dead-lettered at
    once by the live consumer, skipped by a rebuild."""


@dataclass(frozen=True)
class Flow:
    """One count (or amount) of a flow indicator, placed at a commune in a month."""

    indicator: str
    month: int
    commune: str
    combo: str | None  # fixed combo, or None for sex x age band (depends on the period end)
    amount: int = 1
    sex: str = ""
    birth_month: int = 0

    def cells(self) -> Counter[CellKey]:
        """The month, quarter and year cells it adds to, each with its own age band."""
        out: Counter[CellKey] = Counter()
        for period in periods_of(self.month):
            combo = self.combo or f"{self.sex}_{age_band(self.birth_month, period.last)}"
            out[(self.indicator, period.code, self.commune, combo)] += self.amount
        return out


@dataclass
class Effects:
    """What one event changes: child or provider versions to record, flows to count."""

    child: ChildVersion | None = None
    provider: ProviderVersion | None = None
    flows: list[Flow] = field(default_factory=list)
    worker: WorkerVersion | None = None
    caseload: CaseloadChange | None = None
    assignment: Assignment | None = None
    flag: VisitFlag | None = None
    reintegration: Reintegration | None = None
    followup: Followup | None = None


def _data(event: CloudEvent) -> Any:
    try:
        return model_for(event.type).model_validate(event.data)
    except (KeyError, ValidationError) as exc:
        raise InvalidEvent(f"{event.type}: data does not match the catalogue") from exc


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not a UUID") from exc


def _commune(code: str) -> str:
    if len(code) != COMMUNE_LENGTH or not places.exists(code):
        raise InvalidEvent("commune_code is not a commune of the gazetteer")
    return code


def _month_of(text: str, what: str) -> int:
    try:
        if len(text) == 7:  # YYYY-MM
            return month_index(int(text[:4]), int(text[5:7]))
        return date_month(date.fromisoformat(text))
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not a date") from exc


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not a date") from exc


_CARE_SETTINGS = frozenset(c.value for c in CareSetting)


def _child(event: CloudEvent) -> Effects:
    data = _data(event)
    if event.type.split(".")[2] == "reintegrated":
        return _reintegrated(event, data)
    sex = SEXES.get(data.sex)
    if sex is None:
        raise InvalidEvent("sex is neither female nor male")
    registered = _month_of(data.registered_on, "registered_on")
    birth = _month_of(data.birth_month, "birth_month")
    state = ChildState(
        commune=_commune(data.commune_code),
        sex=sex,
        birth_month=birth,
        status=data.status,
        risk=data.risk_level,
        vulnerabilities=tuple(sorted(set(data.vulnerabilities) & set(VULNERABILITIES))),
        care_setting=data.care_setting if data.care_setting in _CARE_SETTINGS else "unknown",
    )
    verb = event.type.split(".")[2]
    # A registration holds from its registration month; a later change from the month it
    # happened, never before the registration.
    effective = registered if verb == "registered" else max(registered, cambodia_month(event.time))
    child = ChildVersion(_uuid(data.child_id, "child_id"), int(data.version), effective, state)
    flows = []
    if verb == "registered":
        flows.append(Flow("CP_CHILD_REG", registered, state.commune, None, 1, sex, birth))
    return Effects(child=child, flows=flows)


def _reintegrated(event: CloudEvent, data: Any) -> Effects:
    """A move out of residential care: counted in the month of reintegrated_on, where the
    child lives then; the child's new version comes with the `updated` event beside it."""
    sex = SEXES.get(data.sex)
    if sex is None:
        raise InvalidEvent("sex is neither female nor male")
    on = _date(data.reintegrated_on, "reintegrated_on")
    birth = _month_of(data.birth_month, "birth_month")
    commune = _commune(data.commune_code)
    child_id = _uuid(data.child_id, "child_id")
    return Effects(
        flows=[Flow("CP_REINTEGRATED", date_month(on), commune, None, 1, sex, birth)],
        reintegration=Reintegration(_uuid(event.id, "event id"), child_id, on),
    )


def _worker(event: CloudEvent) -> Effects:
    data = _data(event)
    contracts = []
    for c in data.contracts:
        start = _date(c.start_on, "contract start_on")
        end = _date(c.end_on, "contract end_on") if c.end_on else None
        contracts.append((start, end))
    trained = [
        _date(t.completed_on, "completed_on") for t in data.trainings if t.course == BASIC_COURSE
    ]
    return Effects(
        worker=WorkerVersion(
            worker_id=_uuid(data.worker_id, "worker_id"),
            version=int(data.version),
            effective=cambodia_month(event.time),
            status=data.status,
            role=data.role if data.role in WORKER_ROLES else "",
            areas=tuple(sorted({a for a in data.areas if places.exists(a)})),
            contracts=tuple(sorted(contracts, key=lambda c: (c[0], c[1] or date.max))),
            trained_on=min(trained) if trained else None,
        )
    )


def _assignment(event: CloudEvent) -> Effects:
    data = _data(event)
    event_id = _uuid(event.id, "event id")
    started = _date(data.started_on, "started_on")
    ended = _date(data.ended_on, "ended_on") if data.ended_on else None
    ending = event.type.split(".")[2] == "ended"
    if ending and ended is None:
        raise InvalidEvent("an ended assignment without ended_on")
    worker_id = _uuid(data.worker_id, "worker_id")
    return Effects(
        assignment=Assignment(
            _uuid(data.assignment_id, "assignment_id"),
            _uuid(data.child_id, "child_id"),
            worker_id,
            started,
            ended if ending else None,
        ),
        caseload=CaseloadChange(
            event_id,
            worker_id,
            (ended or started) if ending else started,
            event.time,
            int(data.caseload),
            int(data.max_caseload),
        ),
    )


def _visit(event: CloudEvent) -> Effects:
    data = _data(event)
    commune = _commune(data.commune_code)
    child_id = _uuid(data.child_id, "child_id")
    kind = event.type.split(".")[2]
    if kind == "recorded":
        on = _date(data.date, "date")
        flows = (
            [Flow("CP_VISITS", date_month(on), commune, data.kind)]
            if (data.kind in VISIT_KINDS)
            else []
        )
        months = tuple(sorted(set(data.followups_made) & set(FOLLOWUP_MONTHS)))
        followup = (
            Followup(_uuid(data.visit_id, "visit_id"), child_id, on, months) if (months) else None
        )
        return Effects(flows=flows, followup=followup)
    # overdue / overdue_cleared
    return Effects(
        flag=VisitFlag(
            _uuid(event.id, "event id"),
            child_id,
            _date(data.at, "at"),
            event.time,
            bool(data.overdue),
        )
    )


_REFERRAL_FLOWS = {
    "created": "CP_REF_MADE",
    "accepted": "CP_REF_ACCEPTED",
    "completed": "CP_REF_COMPLETED",
    "overdue": "CP_REF_OVERDUE",
    "unmatched": "CP_REF_UNMATCHED",
}
# Flows counted in the month of a time the event's data carries, not of the event: overdue
# in the month of its due time, an unmatched referral in the month routing failed for it
# (its producer publishes one per child, service type and that month).
_REFERRAL_MONTH_OF = {"CP_REF_OVERDUE": "due_at", "CP_REF_UNMATCHED": "occurred_at"}


def _instant_month(text: str, what: str) -> int:
    try:
        return cambodia_month(datetime.fromisoformat(text))
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not RFC 3339") from exc


def _referral(event: CloudEvent) -> Effects:
    data = _data(event)
    commune = _commune(data.commune_code)
    indicator_code = _REFERRAL_FLOWS.get(event.type.split(".")[2])
    if indicator_code is None or data.service_type not in SERVICE_TYPES:
        return Effects()
    field = _REFERRAL_MONTH_OF.get(indicator_code)
    if field is not None:
        month = _instant_month(getattr(data, field), field)
    else:
        month = cambodia_month(event.time)
    return Effects(flows=[Flow(indicator_code, month, commune, data.service_type)])


def _grant(event: CloudEvent) -> Effects:
    data = _data(event)
    commune = _commune(data.commune_code)
    verb = event.type.split(".")[2]
    if data.category not in GRANT_CATEGORIES or verb not in ("approved", "disbursed"):
        return Effects()
    month = cambodia_month(event.time)
    if verb == "approved":
        return Effects(flows=[Flow("CP_GRANT_APPROVED", month, commune, data.category)])
    if data.amount_khr < 0:
        raise InvalidEvent("amount_khr is negative")
    return Effects(
        flows=[
            Flow("CP_GRANT_DISBURSED", month, commune, data.category),
            Flow("CP_GRANT_DISBURSED_KHR", month, commune, data.category, data.amount_khr),
        ]
    )


def _provider(event: CloudEvent) -> Effects:
    data = _data(event)
    areas = tuple(sorted({a for a in data.areas if places.exists(a)}))
    return Effects(
        provider=ProviderVersion(
            provider_id=_uuid(data.provider_id, "provider_id"),
            version=int(data.version),
            effective=cambodia_month(event.time),
            active=bool(data.active),
            service_types=tuple(sorted(set(data.service_types) & set(SERVICE_TYPES))),
            areas=areas,
        )
    )


def effects_of(event: CloudEvent) -> Effects:
    """What an event changes in the aggregates; InvalidEvent when it cannot be counted."""
    parts = event.type.split(".")
    if len(parts) != 4:
        raise InvalidEvent("event type is not <service>.<entity>.<verb>.v<N>")
    entity = ".".join(parts[:2])
    if entity == "registry.child":
        return _child(event)
    if entity == "referrals.referral":
        return _referral(event)
    if entity == "referrals.provider":
        return _provider(event)
    if entity == "funds.grant":
        return _grant(event)
    if entity == "casework.worker":
        return _worker(event)
    if entity == "casework.assignment":
        return _assignment(event)
    if entity == "casework.visit":
        return _visit(event)
    return Effects()  # funds.fund.*, casework.plan.*: nothing to count
