"""Routes of the indicators service: parse, authorise, call the use case, answer."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import StringConstraints

from libs.common.auth import Principal, PrincipalDep
from libs.common.errors import Conflict, Forbidden, invalid
from libs.common.inputs import COUNTED_PLACE_PATTERN, one_of
from libs.common.runtime import RuntimeDep, ServiceRuntime
from services.indicators import (
    catalogue,
    dates,
    dhis2,
    geography,
    jetstream,
    query_bounds,
    replay,
    service,
)
from services.indicators.schemas import RebuildOut, StatusOut, ValuesOut
from services.indicators.store import bookkeeping

router = APIRouter(prefix="/v1/indicators", tags=["indicators"])
Level = Literal["province", "district", "commune"]
# Enums in the published document, from the catalogue itself.
if TYPE_CHECKING:
    IndicatorCode = str
    DataSetCode = str
else:
    IndicatorCode = one_of(catalogue.BY_CODE)
    DataSetCode = one_of(catalogue.DATA_SETS)
PERIOD_PATTERN = r"^[0-9]{4}([0-9]{2}|Q[1-4])?$"
CSV_TYPE = "text/csv; charset=utf-8"
FIRST_DAY = date(dates.FIRST_YEAR, 1, 1)
ADX_TYPE = "application/adx+xml; charset=utf-8"


def parse_period(code: str, field: str = "period") -> dates.Period:
    """A DHIS2 period of 2000 or later, else 422 naming the field."""
    try:
        period = dates.Period.parse(code)
    except ValueError as exc:
        raise invalid(field, str(exc)) from exc
    query_bounds.check_query_period(period, field)
    return period


def check_date(value: date | None, field: str) -> None:
    """422 for a startDate or endDate before 2000-01-01."""
    if value is not None and value < FIRST_DAY:
        raise invalid(field, f"lies before {FIRST_DAY.isoformat()}: dates start in 2000")


def check_place(principal: Principal, code: str, field: str) -> None:
    """422 for a code that is not a place we count at; 403 outside the principal's areas."""
    try:
        geography.check_area(code)
    except Exception as exc:
        raise invalid(field, f"{code!r} is not a province, district or commune, nor KH") from exc
    if not principal.covers(code):
        raise Forbidden(f"{field} {code} is outside your areas")


@router.get("/catalog")
async def catalog(principal: PrincipalDep) -> dict[str, Any]:
    """Every indicator: definition, disaggregation and its combos, stock or flow, roll-up."""
    principal.require("indicators:read")
    return catalogue.catalogue()


@router.get(
    "/values",
    response_model=ValuesOut,
    responses={403: {"description": "The area is outside your areas"}},
)
async def values(
    principal: PrincipalDep,
    rt: RuntimeDep,
    indicator: Annotated[IndicatorCode, Query(description="An indicator code.")],
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="202603, 2026Q1 or 2026.")],
    area: Annotated[
        str,
        Query(pattern=COUNTED_PLACE_PATTERN, description="KH, a province, district or commune."),
    ],
    level: Annotated[Level | None, Query(description="Rows for the area's places.")] = None,
) -> JSONResponse:
    """One indicator for a period: a row per disaggregation for the area or its places."""
    principal.require("indicators:read")
    ind = catalogue.indicator(indicator)
    p = parse_period(period)
    check_place(principal, area, "area")
    places = geography.places_at(area, level)
    query_bounds.check_query_size([p], len(places), [ind], "area")
    rows = await service.table(rt.db, principal, [ind], [p], places)
    return JSONResponse(
        {
            "indicator": ind.code,
            "period": p.code,
            "area": area,
            "level": level,
            "items": [
                {
                    "indicator": r.indicator,
                    "period": r.period.code,
                    "area": r.place,
                    "disaggregation": r.combo,
                    "value": r.value,
                    "suppressed": False,
                    "rounded": r.rounded,
                }
                for r in rows
            ],
        }
    )


# ---------------------------------------------------------------- DHIS2 dataValueSets

_DURATION = re.compile(r"(\d{1,12})([smhd])", re.ASCII)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_last_updated(value: str | None, duration: str | None) -> datetime | None:
    """DHIS2's lastUpdated (a date or a date-time) or lastUpdatedDuration (`10d`, `2h`)."""
    if value:
        try:
            if len(value) == 10:
                return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            moment = datetime.fromisoformat(value.replace(" ", "+"))
        except ValueError as exc:
            raise invalid("lastUpdated", "a date (2026-03-01) or a date-time") from exc
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if duration:
        match = _DURATION.fullmatch(duration)
        if match is None:
            raise invalid("lastUpdatedDuration", "a duration like 10d, 12h, 30m or 45s")
        now = datetime.now(UTC)
        seconds = int(match[1]) * _SECONDS[match[2]]
        earliest = datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
        # Longer than everything counted (or than a timedelta holds): everything.
        if seconds >= (now - earliest).total_seconds():
            return earliest
        return now - timedelta(seconds=seconds)
    return None


def _check_code_scheme(request: Request) -> None:
    for name in (
        "idScheme",
        "dataElementIdScheme",
        "orgUnitIdScheme",
        "categoryOptionComboIdScheme",
        "dataSetIdScheme",
        "inputIdScheme",
        "outputIdScheme",
    ):
        scheme = request.query_params.get(name)
        if scheme is not None and scheme.lower() != "code":
            raise invalid(name, "Komar's identifiers are codes: use code (or leave it out)")


def _format(request: Request, suffix: str | None) -> str:
    if suffix is not None:
        return suffix
    accept = request.headers.get("accept", "").lower()
    if "application/adx+xml" in accept:
        return "adx"
    if "text/csv" in accept or "application/csv" in accept:
        return "csv"
    return "json"


async def data_value_sets(
    request: Request,
    principal: Principal,
    rt: ServiceRuntime,
    suffix: str | None,
    data_set: list[str],
    period: list[str],
    org_unit: list[str],
    children: bool,
    last_updated: str | None,
    last_updated_duration: str | None,
    start_date: date | None,
    end_date: date | None,
    data_element: list[str],
) -> Response:
    """Data values in DHIS2's dataValueSets format (idScheme=code)."""
    principal.require("indicators:read")
    _check_code_scheme(request)
    for ds in data_set:
        if ds not in catalogue.DATA_SETS:
            raise invalid("dataSet", f"unknown data set; one of {', '.join(catalogue.DATA_SETS)}")
    if not data_set and not data_element:
        raise invalid("dataSet", "name a dataSet (CP_MONTHLY, …) or dataElement")
    for e in data_element:
        if e not in catalogue.BY_CODE:
            raise invalid(
                "dataElement", f"unknown data element; one of {', '.join(catalogue.BY_CODE)}"
            )
    elements = [catalogue.BY_CODE[e] for e in dict.fromkeys(data_element)] or list(
        catalogue.INDICATORS
    )
    types = {catalogue.DATA_SETS[ds] for ds in data_set}
    now = dates.current_month()
    if period:
        periods = [parse_period(p) for p in dict.fromkeys(period)]
        field = "period"
    elif start_date is not None and end_date is not None:
        check_date(start_date, "startDate")
        check_date(end_date, "endDate")
        if end_date < start_date:
            raise invalid("endDate", "is before startDate")
        # Nothing lies after this year's end: a far endDate costs nothing more.
        end_date = min(end_date, date(dates.year_month(now)[0], 12, 31))
        span = dates.date_month(end_date) - dates.date_month(start_date) + 1
        if span > query_bounds.MAX_YEARS * 12:
            raise invalid(
                "startDate",
                f"limit: at most {query_bounds.MAX_YEARS} years of periods per request "
                f"(startDate to endDate: {span} months)",
            )
        periods = [
            p
            for t in sorted(types or set(dates.PeriodType))
            for p in dates.periods_between(start_date, end_date, t)
        ]
        periods = [p for p in periods if p.first <= now]
        field = "startDate"
    else:
        raise invalid("period", "give period (repeatable) or startDate and endDate")
    for p in periods:
        if types and p.type not in types:
            raise invalid("period", f"{p.code} is not a period of {', '.join(data_set)}")
    if not org_unit:
        raise invalid("orgUnit", "give at least one orgUnit (a gazetteer code or KH)")
    org_unit = list(dict.fromkeys(org_unit))
    for ou in org_unit:
        check_place(principal, ou, "orgUnit")
    since = parse_last_updated(last_updated, last_updated_duration)
    units: list[str] = []
    for ou in org_unit:
        units.extend(geography.descendants(ou) if children else [ou])
    units = list(dict.fromkeys(units))
    query_bounds.check_query_size(periods, len(units), elements, field)
    rows = await service.table(rt.db, principal, elements, sorted(periods), units)
    if since is not None:
        rows = [r for r in rows if r.last_updated is not None and r.last_updated >= since]
    fmt = _format(request, suffix)
    if fmt == "csv":
        return Response(dhis2.data_value_csv(rows), media_type=CSV_TYPE)
    if fmt == "adx":
        return Response(dhis2.adx(rows, exported=datetime.now(UTC)), media_type=ADX_TYPE)
    single = len(data_set) == 1 and len(periods) == 1 and len(org_unit) == 1 and not children
    return JSONResponse(
        dhis2.data_value_set(
            rows,
            data_set=data_set[0] if single else None,
            period=periods[0].code if single else None,
            org_unit=org_unit[0] if single else None,
        )
    )


def _dvs_route(suffix: str | None) -> Callable[..., Awaitable[Response]]:
    async def endpoint(
        request: Request,
        principal: PrincipalDep,
        rt: RuntimeDep,
        dataSet: Annotated[
            list[DataSetCode], Query(description="CP_MONTHLY, CP_QUARTERLY, CP_YEARLY")
        ] = [],  # noqa: B006
        period: Annotated[
            list[Annotated[str, StringConstraints(pattern=PERIOD_PATTERN)]],
            Query(description="DHIS2 periods (repeatable)"),
        ] = [],  # noqa: B006
        orgUnit: Annotated[
            list[Annotated[str, StringConstraints(pattern=COUNTED_PLACE_PATTERN)]],
            Query(description="KH, provinces, districts or communes"),
        ] = [],  # noqa: B006
        children: bool = False,
        lastUpdated: Annotated[str | None, Query(max_length=40)] = None,
        lastUpdatedDuration: Annotated[str | None, Query(max_length=20)] = None,
        startDate: date | None = None,
        endDate: date | None = None,
        dataElement: Annotated[list[IndicatorCode], Query()] = [],  # noqa: B006
    ) -> Response:
        return await data_value_sets(
            request,
            principal,
            rt,
            suffix,
            dataSet,
            period,
            orgUnit,
            children,
            lastUpdated,
            lastUpdatedDuration,
            startDate,
            endDate,
            dataElement,
        )

    endpoint.__doc__ = (
        "Data values in DHIS2 dataValueSets format, idScheme=code: JSON by default, CSV with "
        "Accept: text/csv or .csv, ADX with Accept: application/adx+xml."
    )
    return endpoint


# The same resource under DHIS2's own path, so a DHIS2 client whose base URL is
# …/v1/indicators finds /api/dataValueSets(.json|.csv) where it expects it.
for _base in ("/dataValueSets", "/api/dataValueSets"):
    for _suffix in (None, "json", "csv"):
        router.add_api_route(
            _base + (f".{_suffix}" if _suffix else ""),
            _dvs_route(_suffix),
            methods=["GET"],
            include_in_schema=_base == "/dataValueSets",
            name=f"dataValueSets{_base.count('/api')}{_suffix or ''}",
            responses={
                200: {
                    "content": {
                        "application/json": {},
                        "text/csv": {},
                        "application/adx+xml": {},
                    }
                }
            },
        )


# ---------------------------------------------------------------- operations


@router.get("/status", response_model=StatusOut)
async def status(principal: PrincipalDep, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """Per stream: last applied sequence, the stream's last, lag, age of the oldest unapplied."""
    principal.require("indicators:read")
    streams: list[dict[str, Any]] = []
    for stream, (durable, _) in jetstream.CONSUMERS.items():
        if rt.bus.connected:
            try:
                streams.append(await jetstream.stream_status(rt.bus.js, stream, durable))
                continue
            except Exception as exc:
                streams.append({"stream": stream, "consumer": durable, "exists": False})
                request.state.status_error = type(exc).__name__
                continue
        streams.append({"stream": stream, "consumer": durable, "exists": False})
    async with rt.db.transaction() as conn:
        active = await bookkeeping.active_target(conn)
        last = await bookkeeping.latest_rebuild(conn)
    rebuilds = request.app.state.rebuilds
    rebuild = None
    if last is not None or rebuilds.running:
        rebuild = {
            "running_here": rebuilds.running,
            "last_error": rebuilds.last_error,
            **(
                {
                    "generation": last["generation"],
                    "state": last["state"],
                    "events_replayed": last["events_replayed"],
                    "started_at": last["started_at"].isoformat(),
                    "finished_at": last["finished_at"].isoformat() if last["finished_at"] else None,
                }
                if last
                else {}
            ),
        }
    return {
        "broker": rt.bus.connected,
        "streams": streams,
        "generation": active.generation,
        "stocks_through": dates.month_code(active.stock_through)
        if active.stock_through is not None
        else None,
        "rebuild": rebuild,
    }


@router.post(
    "/rebuild",
    status_code=202,
    response_model=RebuildOut,
    responses={409: {"description": "A rebuild is already running"}},
)
async def rebuild(
    principal: PrincipalDep,
    request: Request,
    wait: Annotated[bool, Query(description="Answer when the rebuild is done (200).")] = False,
) -> Response:
    """Recompute every aggregate by replaying the streams; switch atomically when done."""
    principal.require("admin")
    rebuilds = request.app.state.rebuilds
    if rebuilds.running:
        raise Conflict("a rebuild is already running")
    rebuilds.start()
    if not wait:
        return JSONResponse(
            {"state": "started"}, status_code=202, headers={"Location": "/v1/indicators/status"}
        )
    result: replay.RebuildResult = await rebuilds.task
    return JSONResponse(
        {
            "state": "done",
            "generation": result.generation,
            "previous_generation": result.previous,
            "events": result.events,
            "seconds": result.seconds,
        }
    )
