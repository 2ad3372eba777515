"""Hostile input against the running platform, through the gateway: control characters,
forged cursors, out-of-range dates, bodies that do not parse. Each answers 422 (or 404)
naming what is wrong; none answers 500, and no log line carries what was sent."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import httpx
import pytest

from libs.common.http import encode_cursor
from tests.e2e.conftest import Platform
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller

EVERY_SCOPE = [
    "registry:read",
    "registry:write",
    "referrals:read",
    "referrals:write",
    "funds:read",
    "funds:request",
    "funds:manage",
    "indicators:read",
]


@pytest.fixture
async def officer(gateway: httpx.AsyncClient, admin_headers: dict[str, str]) -> Caller:
    """A government officer for all of Cambodia."""
    return await new_caller(
        gateway, admin_headers, scopes=EVERY_SCOPE, areas=["KH"], org_type="government"
    )


def assert_names(answer: httpx.Response, field: str, status: int = 422) -> None:
    """A problem+json answer of `status` whose errors name `field`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    fields = [e["field"] for e in answer.json().get("errors", [])]
    assert field in fields, answer.text


def logs(platform: Platform) -> str:
    """Everything every process has logged so far."""
    return "".join(
        p.log_path.read_text(errors="replace")
        for p in (platform.supervisor.get(n) for n in platform.supervisor.names())
    )


async def test_a_nul_in_a_search_answers_422_and_reaches_no_log(
    platform: Platform, gateway: httpx.AsyncClient, officer: Caller
) -> None:
    marker = f"sok{secrets.token_hex(4)}"
    answer = await gateway.get(f"/v1/registry/children?q={marker}%00", headers=officer.headers)
    assert_names(answer, "q")
    assert marker not in logs(platform)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("given_name", "So\x00kha"),
        ("family_name", "Chan\x1b[31m"),
        ("given_name", "Sokha\n"),  # a line break has no place in a name
        ("household_id_poor", "\x7f12"),
        ("caregiver.name", "Dara\u0085Chan"),  # C1 control
    ],
)
async def test_control_characters_in_a_new_child_answer_422_naming_the_field(
    platform: Platform, gateway: httpx.AsyncClient, officer: Caller, field: str, value: str
) -> None:
    body = child_body()
    if field.startswith("caregiver."):
        body["caregiver"] = {**body["caregiver"], field.split(".")[1]: value}
    else:
        body[field] = value
    answer = await gateway.post("/v1/registry/children", json=body, headers=officer.headers)
    assert_names(answer, field)
    assert value.strip() not in logs(platform)


async def test_control_characters_in_a_patch_answer_422_and_change_nothing(
    gateway: httpx.AsyncClient, officer: Caller
) -> None:
    created = await gateway.post(
        "/v1/registry/children", json=child_body(), headers=officer.headers
    )
    assert created.status_code == 201, created.text
    path = created.headers["location"]
    headers = {
        **officer.headers,
        "If-Match": created.headers["etag"],
        "Content-Type": "application/merge-patch+json",
    }
    answer = await gateway.patch(
        path, content=json.dumps({"family_name": "Ch\x00an"}), headers=headers
    )
    assert_names(answer, "family_name")
    after = await gateway.get(path, headers=officer.headers)
    assert after.json()["family_name"] == "Chan"
    assert after.headers["etag"] == created.headers["etag"]


async def test_free_text_may_hold_line_breaks_but_no_other_control_character(
    gateway: httpx.AsyncClient, officer: Caller
) -> None:
    created = await gateway.post(
        "/v1/registry/children", json=child_body(), headers=officer.headers
    )
    path = created.headers["location"]
    refused = await gateway.post(
        f"{path}/close", json={"reason": "moved\x00away"}, headers=officer.headers
    )
    assert_names(refused, "reason")
    closed = await gateway.post(
        f"{path}/close",
        json={"reason": "Moved away.\r\nFamily traced\tin Kampot."},
        headers=officer.headers,
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["close_reason"] == "Moved away.\r\nFamily traced\tin Kampot."


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/registry/children?q=a%01b", "q"),
        ("/v1/registry/children?commune_code=12%000101", "commune_code"),
        ("/v1/referrals/providers?commune_code=%0a120101", "commune_code"),
        ("/v1/referrals?status=pending%00", "status"),
        ("/v1/funds/funds?commune_code=12%7f", "commune_code"),
        ("/v1/funds/reconciliation?fund_id=%1b", "fund_id"),
        ("/v1/indicators/values?indicator=CP_CHILD_REG%00&period=2026&area=KH", "indicator"),
        ("/v1/indicators/dataValueSets?dataSet=CP_MONTHLY&period=202601&orgUnit=KH%09", "orgUnit"),
        ("/v1/registry/children?q=%ff%fe", "q"),  # not UTF-8
    ],
)
async def test_control_characters_in_a_query_answer_422_naming_the_parameter(
    gateway: httpx.AsyncClient, officer: Caller, path: str, field: str
) -> None:
    assert_names(await gateway.get(path, headers=officer.headers), field)


async def test_control_characters_in_admin_queries_and_ids(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_names(await gateway.get("/v1/admin/clients?org=a%00b", headers=admin_headers), "org")
    assert_names(await gateway.get("/v1/admin/users?org=%1f", headers=admin_headers), "org")
    for path in ("/v1/admin/clients/a%00b", "/v1/admin/users/%07", "/v1/registry/children/%00"):
        answer = await gateway.get(path, headers=admin_headers)
        assert answer.status_code == 404, answer.text


def _raw_cursor(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Cursors no list ever issued: garbage, other shapes, other lists' cursors, values that do
# not fit a timestamp, a UUID or a BIGINT, and a NUL in an id.
FORGED = [
    "!!!not-base64!!!",
    _raw_cursor(b"\xff\xfe\xfd"),
    _raw_cursor(b'{"a": 1}'),
    _raw_cursor(b"[]"),
    _raw_cursor(b"[1e400]"),
    encode_cursor(2**70),
    encode_cursor(-1),
    encode_cursor("x"),
    encode_cursor(True),
    encode_cursor("2026-01-01T00:00:00", str(uuid.uuid4())),  # no offset
    encode_cursor("9999-12-31T23:59:59-14:00", str(uuid.uuid4())),  # past year 9999 in UTC
    encode_cursor("0001-01-01T00:00:00+14:00", "cli_0"),  # before year 1 in UTC
    encode_cursor("2026-01-01T00:00:00+00:00", "cli_\x00"),
    encode_cursor(["2026-01-01T00:00:00+00:00"], [str(uuid.uuid4())]),
]


async def _lists(
    gateway: httpx.AsyncClient, officer: Caller, admin_headers: dict[str, str]
) -> list[tuple[str, dict[str, str]]]:
    """Every list endpoint of every service and the admin API, with the headers to call it."""
    child = await gateway.post("/v1/registry/children", json=child_body(), headers=officer.headers)
    assert child.status_code == 201, child.text
    child_id = child.json()["id"]
    fund = await gateway.post(
        "/v1/funds/funds",
        json={
            "commune_code": "120101",
            "fiscal_year": 2026,
            "name": "Hostile input fund",
            "budget_khr": 1_000_000,
            "max_grant_khr": 100_000,
            "approval_threshold_khr": 50_000,
        },
        headers=officer.headers,
    )
    assert fund.status_code in (201, 409), fund.text
    fund_id = fund.json()["id"] if fund.status_code == 201 else str(uuid.uuid4())
    mine = officer.headers
    return [
        ("/v1/registry/children", mine),
        (f"/v1/registry/children/{child_id}/history", mine),
        (f"/v1/registry/audit?child_id={child_id}", admin_headers),
        ("/v1/referrals/providers", mine),
        ("/v1/referrals", mine),
        ("/v1/funds/funds", mine),
        (f"/v1/funds/funds/{fund_id}/ledger", mine),
        ("/v1/funds/grants", mine),
        ("/v1/admin/clients", admin_headers),
        ("/v1/admin/users", admin_headers),
    ]


async def test_forged_cursors_answer_422_on_every_list(
    gateway: httpx.AsyncClient, officer: Caller, admin_headers: dict[str, str]
) -> None:
    checked: dict[str, list[int]] = {}
    for path, headers in await _lists(gateway, officer, admin_headers):
        join = "&" if "?" in path else "?"
        for cursor in FORGED:
            answer = await gateway.get(f"{path}{join}cursor={cursor}", headers=headers)
            checked.setdefault(path, []).append(answer.status_code)
            if answer.status_code == 404 and path.endswith("/ledger"):
                continue  # the fund could not be made here; the cursor was never reached
            assert_names(answer, "cursor")
    assert len(checked) == 10


@pytest.mark.parametrize(
    "query",
    [
        "updated_since=0.5",  # a number, which a lax parser reads as a Unix time
        "updated_since=2026-01-01",  # a date, not a date-time
        "updated_since=2026-01-01T00:00:00",  # no offset
        "updated_since=0001-01-01T00:00:00%2B14:00",
        "updated_since=9999-12-31T23:59:59-14:00",
        "limit=99999999999999999999999999",
        "limit=0",
    ],
)
async def test_out_of_range_list_parameters_answer_422(
    gateway: httpx.AsyncClient, officer: Caller, query: str
) -> None:
    field = query.split("=")[0]
    for path in ("/v1/registry/children", "/v1/referrals", "/v1/funds/grants"):
        assert_names(await gateway.get(f"{path}?{query}", headers=officer.headers), field)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nested past any parser's recursion
        b'{"given_name": "\xff\xfe"}',  # not UTF-8
        b'{"given_name": "Sokha"',  # cut short
    ],
)
@pytest.mark.parametrize("path", ["/v1/registry/children", "/v1/referrals/providers"])
async def test_bodies_that_do_not_parse_answer_422(
    gateway: httpx.AsyncClient, officer: Caller, body: bytes, path: str
) -> None:
    headers = {**officer.headers, "Content-Type": "application/json"}
    answer = await gateway.post(path, content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_ids_that_do_not_parse_answer_404(
    gateway: httpx.AsyncClient, officer: Caller
) -> None:
    for path in (
        "/v1/registry/children/not-a-uuid",
        "/v1/referrals/12345",
        "/v1/referrals/providers/%F0%9F%92%A9",
        "/v1/funds/funds/" + "9" * 500,
    ):
        answer = await gateway.get(path, headers=officer.headers)
        assert answer.status_code == 404, (path, answer.text)
    # A path that climbs out of its service is refused by the gateway before any routing.
    answer = await gateway.get("/v1/funds/grants/..%2f..%2fetc", headers=officer.headers)
    assert answer.status_code == 400, answer.text
