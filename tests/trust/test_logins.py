"""Logins under attack, against the running platform through the gateway.

A burst of parallel password guesses gets at most 5 of them checked and the right password
is refused once the account is locked; a disabled, locked or unknown account answers exactly
like a wrong password; a burst from one address does not shut out the other clients behind
that address (a shared NAT), and a burst at one client id does not shut out that client.

Each test attacks from an address of its own (a loopback address other than 127.0.0.1), so
the per-address throttle it meets is its own, whatever else the suite does.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.e2e.conftest import Platform, token
from tests.trust.conftest import new_caller

GUESSES = 200
MAX_CHECKS = 5  # five failures within 15 minutes lock the account


def own_address() -> str:
    """A loopback address no other test uses (all of 127.0.0.0/8 reaches the gateway)."""
    a, b, c = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1, secrets.randbelow(250) + 1
    return f"127.{a}.{b}.{c}"


@asynccontextmanager
async def from_address(platform: Platform, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(
        local_address=address, limits=httpx.Limits(max_connections=GUESSES + 50)
    )
    async with httpx.AsyncClient(
        base_url=platform.gateway, transport=transport, timeout=120
    ) as client:
        yield client


async def checks(gateway: httpx.AsyncClient, grant_type: str) -> float:
    """Secrets or passwords the gateway verified against a principal's own hash so far."""
    text = (await gateway.get("/metrics")).text
    pattern = rf'^komar_gateway_credential_checks_total\{{grant_type="{grant_type}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def new_user(gateway: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    body = {
        "name": "Login test",
        "username": f"login-{secrets.token_hex(5)}",
        "password": secrets.token_urlsafe(18),
        "org": f"gov-{secrets.token_hex(3)}",
        "org_type": "government",
        "scopes": ["registry:read"],
        "areas": ["12"],
    }
    r = await gateway.post("/v1/admin/users", json=body, headers=admin_headers)
    assert r.status_code == 201, r.text
    return {**r.json(), "password": body["password"]}


def password_form(username: str, password: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": password}


def client_form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def seen_by_the_caller(response: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """Everything of an answer but its request id and date."""
    headers = sorted(
        (k, v) for k, v in response.headers.items() if k not in ("x-request-id", "date")
    )
    return response.status_code, response.content, tuple(headers)


async def test_200_parallel_guesses_get_at_most_5_checked_and_the_right_password_is_refused(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    user = await new_user(gateway, admin_headers)
    wrong = password_form(user["username"], "not-" + user["password"])
    before = await checks(gateway, "password")
    async with from_address(platform, own_address()) as attacker:
        answers = await asyncio.gather(
            *(attacker.post("/oauth/token", data=wrong) for _ in range(GUESSES))
        )
        checked = await checks(gateway, "password") - before
        print(f"{GUESSES} parallel guesses -> {checked:.0f} checked")
        assert [a.status_code for a in answers] == [401] * GUESSES
        assert len({seen_by_the_caller(a) for a in answers}) == 1  # checked or not, alike
        assert checked <= MAX_CHECKS

        # The right password during the lock-out is refused, exactly like a guess, unchecked.
        right = await attacker.post("/oauth/token", data={**wrong, "password": user["password"]})
        assert seen_by_the_caller(right) == seen_by_the_caller(answers[0])
        assert await checks(gateway, "password") - before == checked

    shown = await gateway.get(f"/v1/admin/users/{user['user_id']}", headers=admin_headers)
    assert shown.json()["locked"] is True
    unlocked = await gateway.post(
        f"/v1/admin/users/{user['user_id']}/unlock", headers=admin_headers
    )
    assert unlocked.status_code == 200, unlocked.text
    ok = await gateway.post("/oauth/token", data={**wrong, "password": user["password"]})
    assert ok.status_code == 200, ok.text


async def test_disabled_locked_unknown_and_wrong_answer_exactly_alike(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    disabled, locked, plain = [await new_user(gateway, admin_headers) for _ in range(3)]
    r = await gateway.post(f"/v1/admin/users/{disabled['user_id']}/disable", headers=admin_headers)
    assert r.status_code == 200, r.text
    async with from_address(platform, own_address()) as caller:
        for _ in range(MAX_CHECKS):
            guess = password_form(locked["username"], "a guess of " + secrets.token_hex(4))
            assert (await caller.post("/oauth/token", data=guess)).status_code == 401
        attempts = {
            "disabled, right password": password_form(disabled["username"], disabled["password"]),
            "locked, right password": password_form(locked["username"], locked["password"]),
            "unknown user": password_form("nobody-" + secrets.token_hex(5), plain["password"]),
            "wrong password": password_form(plain["username"], "not-" + plain["password"]),
        }
        seen = {
            what: seen_by_the_caller(await caller.post("/oauth/token", data=form))
            for what, form in attempts.items()
        }
    first = seen["wrong password"]
    assert first[0] == 401
    assert b'"error":"invalid_grant"' in first[1]
    for what, answer in seen.items():
        assert answer == first, what


async def test_other_clients_behind_the_same_address_keep_working_during_a_burst(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    user = await new_user(gateway, admin_headers)
    target = await new_caller(gateway, admin_headers, scopes=["registry:read"], areas=["12"])
    partners = [
        await new_caller(gateway, admin_headers, scopes=["registry:read"], areas=["12"])
        for _ in range(2)
    ]
    address = own_address()
    before = await checks(gateway, "client_credentials")
    started = time.monotonic()
    async with from_address(platform, address) as shared:
        guesses = [
            shared.post("/oauth/token", data=password_form(user["username"], f"guess {i}"))
            for i in range(GUESSES)
        ] + [
            shared.post("/oauth/token", data=client_form(target.client_id, f"guess {i}"))
            for i in range(GUESSES // 2)
        ]
        innocent = [
            shared.post("/oauth/token", data=client_form(p.client_id, p.secret)) for p in partners
        ]
        answers = await asyncio.gather(*guesses, *innocent)
        assert {a.status_code for a in answers[:GUESSES]} == {401}
        # Guesses at one client id are throttled per client id (429 past a few failures).
        assert {a.status_code for a in answers[GUESSES : len(guesses)]} <= {401, 429}
        for answer in answers[len(guesses) :]:
            assert answer.status_code == 200, answer.text
        client_checks = await checks(gateway, "client_credentials") - before
        print(f"{GUESSES // 2} parallel wrong secrets, one id -> {client_checks:.0f} checked")
        # Ten failures per client id, refilled at ten a minute while the burst lasts.
        assert client_checks <= 10 + (time.monotonic() - started) / 6 + 1

        # Right after the burst, from the same address: the partners, a client made just now,
        # and the client whose id was attacked all get tokens.
        late = await new_caller(gateway, admin_headers, scopes=["registry:read"], areas=["12"])
        for caller in (*partners, late, target):
            r = await shared.post("/oauth/token", data=client_form(caller.client_id, caller.secret))
            assert r.status_code == 200, r.text
        assert await token(shared, "admin", platform.admin_secret)
