"""POST /oauth/token: grants, RFC 6749 errors, lockout, scope narrowing, disabled principals."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from jose import jwt as jose_jwt
from prometheus_client import REGISTRY

from gateway.settings import GatewaySettings
from tests.gateway.conftest import (
    ADMIN_SECRET,
    Gateway,
    bearer,
    client_for,
    running,
)

PROBLEM = "application/problem+json"


def claims_of(token: str) -> dict[str, Any]:
    return jose_jwt.get_unverified_claims(token)


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert response.headers["cache-control"] == "no-store"


async def test_client_credentials_in_form(gw: Gateway, gateway_settings: GatewaySettings) -> None:
    client = await gw.create_client(org="ngo-kampot", areas=["07", "1201"])
    response = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == gateway_settings.token_ttl_s <= 900
    assert body["scope"] == " ".join(sorted(client["scopes"]))
    claims = claims_of(body["access_token"])
    assert claims["sub"] == client["client_id"]
    assert claims["org"] == "ngo-kampot"
    assert claims["org_type"] == "partner"
    assert claims["areas"] == ["07", "1201"]
    assert claims["scope"] == body["scope"]
    assert "preferred_username" not in claims  # an API client has no account name
    assert claims["iss"] == gateway_settings.issuer
    assert claims["aud"] == gateway_settings.audience
    assert isinstance(claims["jti"], str)
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    header = jose_jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["kid"]


async def test_client_credentials_with_http_basic(gw: Gateway) -> None:
    client = await gw.create_client()
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    response = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["sub"] == client["client_id"]


async def test_password_grant(gw: Gateway) -> None:
    user = await gw.create_user(scopes=["registry:read", "funds:read"], areas=["120101"])
    response = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": user["username"], "password": user["password"]},
    )
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert claims["sub"] == user["user_id"]
    assert claims["sub"] != user["username"]
    # the account's name, as OpenID Connect gives it: links a casework worker to the user
    assert claims["preferred_username"] == user["username"].lower()
    assert claims["scope"] == "funds:read registry:read"
    assert claims["areas"] == ["120101"]
    assert claims["org_type"] == "government"


async def test_usernames_are_case_insensitive(gw: Gateway) -> None:
    user = await gw.create_user()
    token = await gw.user_token(user["username"].upper(), user["password"])
    assert claims_of(token)["sub"] == user["user_id"]


async def test_unrecognised_parameters_are_ignored_even_repeated(gw: Gateway) -> None:
    # RFC 6749 §3.1; a recognised one given twice is refused.
    client = await gw.create_client()
    form = [
        ("grant_type", "client_credentials"),
        ("client_id", client["client_id"]),
        ("client_secret", client["client_secret"]),
        ("x-extra", "1"),
        ("x-extra", "2"),
    ]

    async def post(path: str, fields: list[tuple[str, str]]) -> httpx.Response:
        return await gw.http.post(
            path,
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    r = await post("/oauth/token", form)
    assert r.status_code == 200, r.text
    r = await post("/oauth/revoke", [("token", "krt_x"), ("é", "1"), ("é", "2")])
    assert r.status_code == 200, r.text
    r = await post("/oauth/token", [*form, ("grant_type", "password")])
    assert_oauth_error(r, 400, "invalid_request")


async def test_a_name_with_a_control_character_is_a_wrong_login_not_a_failure(
    gw: Gateway,
) -> None:
    # PostgreSQL refuses NUL in text: such a name must never reach a query.
    for name in ("sokha\x00", "a\x1bb", "x\ny"):
        r = await gw.http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": name, "password": "x" * 20},
        )
        assert_oauth_error(r, 401, "invalid_grant")
        r = await gw.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": name, "client_secret": "x"},
        )
        assert_oauth_error(r, 401, "invalid_client")


async def test_wrong_secret_unknown_client_and_wrong_password_are_401(gw: Gateway) -> None:
    client = await gw.create_client()
    wrong = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"] + "x",
        },
    )
    assert_oauth_error(wrong, 401, "invalid_client")
    assert "www-authenticate" in wrong.headers
    unknown = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "cli_nobody",
            "client_secret": "x" * 43,
        },
    )
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.json()["error_description"] == wrong.json()["error_description"]

    user = await gw.create_user()
    bad_password = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": user["username"],
            "password": "not the password",
        },
    )
    assert_oauth_error(bad_password, 401, "invalid_grant")
    no_user = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "nobody-here", "password": "not the password"},
    )
    assert_oauth_error(no_user, 401, "invalid_grant")
    # The answer does not tell whether the username exists.
    assert no_user.json()["error_description"] == bad_password.json()["error_description"]


async def test_malformed_requests(gw: Gateway) -> None:
    http = gw.http
    assert_oauth_error(await http.post("/oauth/token", data={}), 400, "invalid_request")
    assert_oauth_error(
        await http.post("/oauth/token", json={"grant_type": "client_credentials"}),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        await http.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x"}),
        400,
        "unsupported_grant_type",
    )
    assert_oauth_error(
        await http.post("/oauth/token", data={"grant_type": "password", "username": "x"}),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        await http.post(
            "/oauth/token",
            content="grant_type=password&grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        await http.post("/oauth/token", data={"grant_type": "client_credentials"}),
        401,
        "invalid_client",
    )
    assert_oauth_error(
        await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic !!!not-base64"},
        ),
        401,
        "invalid_client",
    )


async def test_scope_narrowing(gw: Gateway) -> None:
    client = await gw.create_client(scopes=["registry:read", "registry:write", "funds:read"])
    token = await gw.token(client["client_id"], client["client_secret"], "registry:read")
    assert claims_of(token)["scope"] == "registry:read"
    response = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "scope": "registry:read admin",
        },
    )
    assert_oauth_error(response, 400, "invalid_scope")
    response = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "scope": "no:such:scope",
        },
    )
    assert_oauth_error(response, 400, "invalid_scope")


async def test_lockout_after_repeated_failures_and_unlock(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    attempt = {
        "grant_type": "password",
        "username": user["username"],
        "password": "wrong password!",
    }
    for _ in range(gateway_settings.login_max_failures):
        assert_oauth_error(await gw.http.post("/oauth/token", data=attempt), 401, "invalid_grant")

    correct = {**attempt, "password": user["password"]}
    locked = await gw.http.post("/oauth/token", data=correct)
    assert_oauth_error(locked, 401, "invalid_grant")

    admin = await gw.admin_headers()
    shown = (await gw.http.get(f"/v1/admin/users/{user['user_id']}", headers=admin)).json()
    assert shown["locked"] is True
    assert shown["locked_until"] is not None

    unlocked = await gw.http.post(f"/v1/admin/users/{user['user_id']}/unlock", headers=admin)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["locked"] is False
    assert (await gw.http.post("/oauth/token", data=correct)).status_code == 200


async def test_a_success_resets_the_failure_count(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    wrong = {"grant_type": "password", "username": user["username"], "password": "wrong password!"}
    correct = {**wrong, "password": user["password"]}
    for _ in range(gateway_settings.login_max_failures - 1):
        await gw.http.post("/oauth/token", data=wrong)
    assert (await gw.http.post("/oauth/token", data=correct)).status_code == 200
    for _ in range(gateway_settings.login_max_failures - 1):
        await gw.http.post("/oauth/token", data=wrong)
    assert (await gw.http.post("/oauth/token", data=correct)).status_code == 200


async def test_lockout_is_shared_by_replicas(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    wrong = {"grant_type": "password", "username": user["username"], "password": "wrong password!"}
    async with running(gateway_settings) as replica, client_for(replica) as other:
        for i in range(gateway_settings.login_max_failures):
            await (gw.http if i % 2 else other).post("/oauth/token", data=wrong)
        correct = {**wrong, "password": user["password"]}
        assert_oauth_error(await other.post("/oauth/token", data=correct), 401, "invalid_grant")
        assert_oauth_error(await gw.http.post("/oauth/token", data=correct), 401, "invalid_grant")


async def test_failed_logins_from_one_address_are_throttled(
    gateway_settings: GatewaySettings,
) -> None:
    settings = gateway_settings.model_copy(
        update={"login_failures_per_minute": 6.0, "login_failure_burst": 3}
    )
    async with running(settings) as app, client_for(app, "198.51.100.9") as http:
        here = Gateway(http)
        partner = await here.create_client()  # the admin's secret is verified here first
        wrong = {"grant_type": "client_credentials", "client_id": "admin", "client_secret": "guess"}
        for _ in range(3):
            assert_oauth_error(await http.post("/oauth/token", data=wrong), 401, "invalid_client")
        throttled = await http.post("/oauth/token", data=wrong)
        assert throttled.status_code == 429
        assert throttled.headers["content-type"].startswith(PROBLEM)
        assert int(throttled.headers["retry-after"]) >= 1
        # A secret this replica verified before costs no slow hash: it is not held up.
        assert (
            await http.post("/oauth/token", data={**wrong, "client_secret": ADMIN_SECRET})
        ).status_code == 200
        # A secret not verified here yet waits, with every other guess from the address.
        right = {
            "grant_type": "client_credentials",
            "client_id": partner["client_id"],
            "client_secret": partner["client_secret"],
        }
        assert (await http.post("/oauth/token", data=right)).status_code == 429
        # Another address is not affected.
        async with client_for(app, "198.51.100.10") as elsewhere:
            assert (await elsewhere.post("/oauth/token", data=right)).status_code == 200


async def test_failures_are_throttled_per_client_id_not_the_client(
    gateway_settings: GatewaySettings,
) -> None:
    settings = gateway_settings.model_copy(
        update={"client_failures_per_minute": 6.0, "client_failure_burst": 3}
    )
    async with running(settings) as app, client_for(app) as http:
        here = Gateway(http)
        partner, _ = await here.client_token()  # the partner got a token here before
        right = {
            "grant_type": "client_credentials",
            "client_id": partner["client_id"],
            "client_secret": partner["client_secret"],
        }
        wrong = {**right, "client_secret": "a guess"}
        for i in range(3):  # from three addresses: the throttle follows the client id
            async with client_for(app, f"192.0.2.{i + 1}") as attacker:
                response = await attacker.post("/oauth/token", data=wrong)
                assert_oauth_error(response, 401, "invalid_client")
        async with client_for(app, "192.0.2.99") as attacker:
            throttled = await attacker.post("/oauth/token", data=wrong)
            assert_oauth_error(throttled, 429, "slow_down")
        # The partner itself keeps getting tokens, and other clients are not concerned.
        assert (await http.post("/oauth/token", data=right)).status_code == 200
        other = await here.create_client()
        assert await here.token(other["client_id"], other["client_secret"])


def password_checks() -> float:
    value = REGISTRY.get_sample_value(
        "komar_gateway_credential_checks_total", {"grant_type": "password"}
    )
    return value or 0.0


async def test_parallel_guesses_are_checked_at_most_the_allowed_number_of_times(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    wrong = {"grant_type": "password", "username": user["username"], "password": "a guess!"}
    before = password_checks()
    answers = await asyncio.gather(*(gw.http.post("/oauth/token", data=wrong) for _ in range(40)))
    assert [a.status_code for a in answers] == [401] * 40
    assert password_checks() - before == gateway_settings.login_max_failures
    # The right password now is refused like any guess, and not even checked.
    right = await gw.http.post("/oauth/token", data={**wrong, "password": user["password"]})
    assert_oauth_error(right, 401, "invalid_grant")
    assert right.json() == answers[0].json()
    assert password_checks() - before == gateway_settings.login_max_failures


async def test_disabled_locked_unknown_and_wrong_answer_alike(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    admin = await gw.admin_headers()
    disabled, locked, wrong = [await gw.create_user() for _ in range(3)]
    await gw.http.post(f"/v1/admin/users/{disabled['user_id']}/disable", headers=admin)
    for _ in range(gateway_settings.login_max_failures):
        await gw.http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": locked["username"], "password": "guess!"},
        )
    attempts = {
        "disabled, right password": (disabled["username"], disabled["password"]),
        "locked, right password": (locked["username"], locked["password"]),
        "unknown": ("nobody-" + locked["username"], locked["password"]),
        "wrong password": (wrong["username"], "not the password"),
    }
    seen = {}
    for what, (username, password) in attempts.items():
        response = await gw.http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": username, "password": password},
        )
        assert_oauth_error(response, 401, "invalid_grant")
        headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
        seen[what] = (response.status_code, response.content, headers)
    assert len(set(map(repr, seen.values()))) == 1, seen


async def test_disabled_client_gets_no_token_and_its_token_is_refused(gw: Gateway) -> None:
    client, token = await gw.client_token()
    assert (await gw.http.get("/v1/registry/echo/x", headers=bearer(token))).status_code == 200
    admin = await gw.admin_headers()
    disabled = await gw.http.post(f"/v1/admin/clients/{client['client_id']}/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["active"] is False

    refused = await gw.http.get("/v1/registry/echo/x", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith(PROBLEM)
    response = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert_oauth_error(response, 401, "invalid_client")

    enabled = await gw.http.post(f"/v1/admin/clients/{client['client_id']}/enable", headers=admin)
    assert enabled.json()["active"] is True
    assert (await gw.http.get("/v1/registry/echo/x", headers=bearer(token))).status_code == 200


async def test_other_replicas_refuse_a_disabled_principal_within_seconds(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    async with running(gateway_settings) as replica, client_for(replica) as other:
        client, token = await gw.client_token()
        user = await gw.create_user()
        user_token = await gw.user_token(user["username"], user["password"])
        assert (await other.get("/v1/registry/echo/a", headers=bearer(token))).status_code == 200
        assert (
            await other.get("/v1/registry/echo/a", headers=bearer(user_token))
        ).status_code == 200

        admin = await gw.admin_headers()
        await gw.http.post(f"/v1/admin/clients/{client['client_id']}/disable", headers=admin)
        await gw.http.post(f"/v1/admin/users/{user['user_id']}/disable", headers=admin)
        started = time.monotonic()
        statuses: tuple[int, int] = (200, 200)
        while time.monotonic() - started < 5:
            statuses = (
                (await other.get("/v1/registry/echo/a", headers=bearer(token))).status_code,
                (await other.get("/v1/registry/echo/a", headers=bearer(user_token))).status_code,
            )
            if statuses == (401, 401):
                break
            await asyncio.sleep(0.1)
        assert statuses == (401, 401)
        assert time.monotonic() - started < 5


async def test_disabled_user_gets_no_token(gw: Gateway) -> None:
    user = await gw.create_user()
    admin = await gw.admin_headers()
    await gw.http.post(f"/v1/admin/users/{user['user_id']}/disable", headers=admin)
    response = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": user["username"], "password": user["password"]},
    )
    assert_oauth_error(response, 401, "invalid_grant")


async def test_bootstrap_admin(gw: Gateway) -> None:
    token = await gw.token("admin", ADMIN_SECRET)
    claims = claims_of(token)
    assert claims["sub"] == "admin"
    assert claims["org"] == "komar"
    assert claims["org_type"] == "government"
    assert claims["areas"] == ["KH"]
    assert "admin" in str(claims["scope"]).split()
    assert "indicators:read:detail" in str(claims["scope"]).split()
    refused = await gw.http.post("/v1/admin/clients/admin/disable", headers=bearer(token))
    assert refused.status_code == 409


async def test_parallel_wrong_secrets_for_one_client_are_checked_at_most_the_burst(
    gateway_settings: GatewaySettings,
) -> None:
    settings = gateway_settings.model_copy(
        update={"client_failures_per_minute": 1.0, "client_failure_burst": 4}
    )
    async with running(settings) as app, client_for(app) as http:
        here = Gateway(http)
        partner, _ = await here.client_token()
        wrong = {
            "grant_type": "client_credentials",
            "client_id": partner["client_id"],
            "client_secret": "a guess",
        }

        def checks() -> float:
            value = REGISTRY.get_sample_value(
                "komar_gateway_credential_checks_total", {"grant_type": "client_credentials"}
            )
            return value or 0.0

        before = checks()
        answers = await asyncio.gather(*(http.post("/oauth/token", data=wrong) for _ in range(60)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [401] * 4 + [429] * 56
        assert checks() - before == 4
        # The partner, verified here before, is not held up by the guesses at its id.
        right = {**wrong, "client_secret": partner["client_secret"]}
        assert (await http.post("/oauth/token", data=right)).status_code == 200
