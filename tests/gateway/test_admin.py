"""The admin API: clients and users, validation, secrets shown once, access, idempotency, lists."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from gateway.models import clients, idempotency_keys, users
from gateway.runtime import GatewayRuntime
from tests.gateway.conftest import ALL_READ, Gateway, bearer, unique

PROBLEM = "application/problem+json"


async def count_clients(app: FastAPI, name: str) -> int:
    rt: GatewayRuntime = app.state.runtime
    async with rt.db.transaction() as conn:
        return int(await conn.scalar(select(func.count()).where(clients.c.name == name)) or 0)


async def count_users(app: FastAPI, org: str) -> int:
    rt: GatewayRuntime = app.state.runtime
    async with rt.db.transaction() as conn:
        return int(await conn.scalar(select(func.count()).where(users.c.org == org)) or 0)


async def test_create_client_answers_201_with_the_secret_once(
    gw: Gateway, gateway_app: FastAPI
) -> None:
    name = unique("Provincial office Kandal")
    body = {
        "name": name,
        "org": "dosvy-kandal",
        "org_type": "government",
        "scopes": ["registry:write", "registry:read", "registry:read"],
        "areas": ["08", "KH"],
    }
    response = await gw.http.post("/v1/admin/clients", json=body, headers=await gw.admin_headers())
    assert response.status_code == 201, response.text
    created = response.json()
    client_id = created["client_id"]
    assert response.headers["location"] == f"/v1/admin/clients/{client_id}"
    assert response.headers["etag"] == '"1"'
    assert response.headers["cache-control"] == "no-store"
    assert len(created["client_secret"]) >= 40
    assert created["scopes"] == ["registry:read", "registry:write"]
    assert created["areas"] == ["08", "KH"]
    assert created["active"] is True
    assert created["name"] == name
    assert created["created_at"]

    shown = await gw.http.get(response.headers["location"], headers=await gw.admin_headers())
    assert shown.status_code == 200
    assert shown.headers["etag"] == '"1"'
    assert "client_secret" not in shown.json()
    assert created["client_secret"] not in shown.text
    assert "secret_hash" not in shown.text
    listed = await gw.http.get(
        "/v1/admin/clients", params={"org": "dosvy-kandal"}, headers=await gw.admin_headers()
    )
    assert created["client_secret"] not in listed.text
    assert any(c["client_id"] == client_id for c in listed.json()["items"])

    # Stored only as a slow hash.
    rt: GatewayRuntime = gateway_app.state.runtime
    async with rt.db.transaction() as conn:
        stored = await conn.scalar(
            select(clients.c.secret_hash).where(clients.c.client_id == client_id)
        )
    assert stored is not None
    assert str(stored).startswith("scrypt$")
    assert created["client_secret"] not in stored


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"scopes": ["registry:read", "registry:delete"]}, "scopes"),
        ({"areas": ["99"]}, "areas"),
        ({"areas": ["120199"]}, "areas"),
        ({"areas": ["Phnom Penh"]}, "areas"),
        ({"org_type": "ngo"}, "org_type"),
        ({"name": "x" * 201}, "name"),
        ({"name": ""}, "name"),
        ({"scopes": []}, "scopes"),
        ({"areas": []}, "areas"),
        ({"org": "has spaces"}, "org"),
        ({"scopes": ["admin"], "org_type": "partner"}, "scopes"),
        ({"rate_limit_per_second": -1}, "rate_limit_per_second"),
    ],
)
async def test_bad_client_input_is_422_and_nothing_is_stored(
    gw: Gateway, gateway_app: FastAPI, change: dict[str, Any], field: str
) -> None:
    name = unique("rejected")
    body = {
        "name": name,
        "org": "ngo-x",
        "org_type": "partner",
        "scopes": ALL_READ,
        "areas": ["12"],
    }
    body.update(change)
    if "name" in change:
        name = change["name"]
    response = await gw.http.post("/v1/admin/clients", json=body, headers=await gw.admin_headers())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == 422
    assert any(e["field"].split(".")[0] == field for e in problem["errors"]), problem
    assert await count_clients(gateway_app, name) == 0


async def test_bad_user_input_is_422_and_nothing_is_stored(
    gw: Gateway, gateway_app: FastAPI
) -> None:
    org = unique("org")
    username = unique("sokha")
    base: dict[str, Any] = {
        "name": "Sokha",
        "username": username,
        "password": "a long enough passphrase",
        "org": org,
        "org_type": "government",
        "scopes": ["registry:read"],
        "areas": ["1201"],
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"password": "short"}, "password"),
        ({"username": "no spaces allowed"}, "username"),
        ({"areas": ["1299"]}, "areas"),
        ({"extra": True}, "extra"),
        ({"password": username + "-and-more"}, "password"),
    ]
    for change, field in cases:
        response = await gw.http.post(
            "/v1/admin/users", json={**base, **change}, headers=await gw.admin_headers()
        )
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        errors = response.json()["errors"]
        assert any(e["field"].split(".")[0] == field for e in errors), response.text
    assert await count_users(gateway_app, org) == 0


async def test_create_user_never_shows_the_password(gw: Gateway, gateway_app: FastAPI) -> None:
    user = await gw.create_user(username=unique("Dara.Chan"))
    assert user["username"] == user["username"].lower()
    assert "password_hash" not in user
    shown = await gw.http.get(
        f"/v1/admin/users/{user['user_id']}", headers=await gw.admin_headers()
    )
    assert shown.status_code == 200
    assert user["password"] not in shown.text
    assert "password" not in shown.json()
    rt: GatewayRuntime = gateway_app.state.runtime
    async with rt.db.transaction() as conn:
        stored = await conn.scalar(
            select(users.c.password_hash).where(users.c.user_id == user["user_id"])
        )
    assert str(stored).startswith("scrypt$")


async def test_duplicate_username_is_409(gw: Gateway) -> None:
    user = await gw.create_user()
    again = {
        "name": "Someone else",
        "username": user["username"].upper(),
        "password": "another long passphrase",
        "org": "x",
        "org_type": "government",
        "scopes": ["registry:read"],
        "areas": ["12"],
    }
    response = await gw.http.post("/v1/admin/users", json=again, headers=await gw.admin_headers())
    assert response.status_code == 409


async def test_admin_api_needs_the_admin_scope(gw: Gateway) -> None:
    client, token = await gw.client_token(scopes=["registry:read", "registry:write"])
    headers = bearer(token)
    body = {
        "name": "x",
        "org": "x",
        "org_type": "partner",
        "scopes": ["registry:read"],
        "areas": ["12"],
    }
    calls = [
        ("POST", "/v1/admin/clients", body),
        ("GET", "/v1/admin/clients", None),
        ("GET", f"/v1/admin/clients/{client['client_id']}", None),
        ("POST", f"/v1/admin/clients/{client['client_id']}/disable", None),
        ("POST", "/v1/admin/users", {**body, "username": "someone", "password": "x" * 20}),
        ("GET", "/v1/admin/users", None),
        ("POST", "/v1/admin/keys/rotate", None),
        ("GET", "/v1/admin/keys", None),
    ]
    for method, path, payload in calls:
        response = await gw.http.request(method, path, json=payload, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        anonymous = await gw.http.request(method, path, json=payload)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["content-type"].startswith(PROBLEM)
    # Nothing was disabled by the refused call.
    assert (await gw.http.get("/v1/registry/echo/ok", headers=headers)).status_code == 200


async def test_an_admin_scope_narrowed_away_is_refused(gw: Gateway) -> None:
    from tests.gateway.conftest import ADMIN_SECRET

    token = await gw.token("admin", ADMIN_SECRET, "registry:read")
    response = await gw.http.get("/v1/admin/clients", headers=bearer(token))
    assert response.status_code == 403


async def test_unknown_ids_are_404(gw: Gateway) -> None:
    admin = await gw.admin_headers()
    for path in [
        "/v1/admin/clients/cli_missing",
        "/v1/admin/users/usr_missing",
    ]:
        assert (await gw.http.get(path, headers=admin)).status_code == 404
    assert (
        await gw.http.post("/v1/admin/clients/cli_missing/disable", headers=admin)
    ).status_code == 404
    assert (
        await gw.http.post("/v1/admin/users/usr_missing/unlock", headers=admin)
    ).status_code == 404


async def test_idempotency_key_replays_the_create(gw: Gateway, gateway_app: FastAPI) -> None:
    admin = {**await gw.admin_headers(), "Idempotency-Key": unique("key")}
    name = unique("idempotent")
    body = {
        "name": name,
        "org": "ngo-y",
        "org_type": "partner",
        "scopes": ALL_READ,
        "areas": ["12"],
    }
    first = await gw.http.post("/v1/admin/clients", json=body, headers=admin)
    second = await gw.http.post("/v1/admin/clients", json=body, headers=admin)
    assert first.status_code == second.status_code == 201
    # The replay answers the same client, without its secret: the secret is shown once.
    secret = first.json()["client_secret"]
    assert secret
    assert second.json() == {**first.json(), "client_secret": None}
    assert secret not in second.text
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await count_clients(gateway_app, name) == 1
    rt: GatewayRuntime = gateway_app.state.runtime
    async with rt.db.transaction() as conn:
        stored = (await conn.execute(select(idempotency_keys.c.body))).scalars().all()
    assert not any(secret.encode() in b for b in stored)
    other = await gw.http.post("/v1/admin/clients", json={**body, "org": "ngo-z"}, headers=admin)
    assert other.status_code == 422


async def test_disable_honours_if_match(gw: Gateway) -> None:
    client = await gw.create_client()
    admin = await gw.admin_headers()
    path = f"/v1/admin/clients/{client['client_id']}"
    stale = await gw.http.post(f"{path}/disable", headers={**admin, "If-Match": '"9"'})
    assert stale.status_code == 412
    done = await gw.http.post(f"{path}/disable", headers={**admin, "If-Match": '"1"'})
    assert done.status_code == 200
    assert done.headers["etag"] == '"2"'
    assert done.json()["version"] == 2
    again = await gw.http.post(f"{path}/disable", headers=admin)
    assert again.status_code == 200
    assert again.json()["version"] == 2


async def test_client_list_pages_with_a_cursor_and_updated_since(gw: Gateway) -> None:
    org = unique("paged")
    made = [await gw.create_client(org=org) for _ in range(5)]
    admin = await gw.admin_headers()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"org": org, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await gw.http.get("/v1/admin/clients", params=params, headers=admin)).json()
        assert len(page["items"]) <= 2
        seen += [c["client_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["client_id"] for c in made]

    since = made[2]["updated_at"]
    recent = await gw.http.get(
        "/v1/admin/clients", params={"org": org, "updated_since": since}, headers=admin
    )
    assert [c["client_id"] for c in recent.json()["items"]] == [c["client_id"] for c in made[2:]]

    bad = await gw.http.get("/v1/admin/clients", params={"cursor": "garbage"}, headers=admin)
    assert bad.status_code == 422
    too_many = await gw.http.get("/v1/admin/clients", params={"limit": 501}, headers=admin)
    assert too_many.status_code == 422


async def test_user_list_filters_by_org(gw: Gateway) -> None:
    org = unique("ccwc")
    a = await gw.create_user(org=org)
    b = await gw.create_user(org=org)
    page = (
        await gw.http.get("/v1/admin/users", params={"org": org}, headers=await gw.admin_headers())
    ).json()
    assert [u["user_id"] for u in page["items"]] == [a["user_id"], b["user_id"]]
    assert page["next_cursor"] is None
    assert all("password" not in u and "password_hash" not in u for u in page["items"])


async def test_an_admin_creates_principals_inside_its_own_areas_only(gw: Gateway) -> None:
    district_admin, token = await gw.client_token(
        org_type="government", scopes=["admin"], areas=["1201"]
    )
    headers = bearer(token)
    base: dict[str, Any] = {
        "name": unique("inside"),
        "org": unique("org"),
        "org_type": "partner",
        "scopes": ["registry:read"],
    }
    user = {**base, "username": unique("user"), "password": "a long enough passphrase"}
    for areas in (["1201"], ["120101"], ["12010101", "1201"]):
        created = await gw.http.post(
            "/v1/admin/clients", json={**base, "areas": areas}, headers=headers
        )
        assert created.status_code == 201, created.text
    for areas in (["KH"], ["12"], ["1202"], ["1201", "1202"], ["120201"]):
        for path, body in (("/v1/admin/clients", base), ("/v1/admin/users", user)):
            refused = await gw.http.post(path, json={**body, "areas": areas}, headers=headers)
            assert refused.status_code == 403, (path, areas, refused.text)
            assert refused.headers["content-type"].startswith(PROBLEM)
    made = await gw.http.post(
        "/v1/admin/users", json={**user, "areas": ["120101"]}, headers=headers
    )
    assert made.status_code == 201, made.text
    assert district_admin["areas"] == ["1201"]


# ---------------------------------------------------------------- a lost password


async def sign_in(gw: Gateway, username: str, password: str) -> Any:
    return await gw.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )


async def test_an_admin_gives_a_user_who_lost_their_password_a_new_one(gw: Gateway) -> None:
    user = await gw.create_user(areas=["1201"])
    first = (await sign_in(gw, user["username"], user["password"])).json()
    assert (await gw.http.get("/v1/me", headers=bearer(first["access_token"]))).status_code == 200
    await asyncio.sleep(2.1)  # older than the second before the change (guard.check)
    for _ in range(5):  # they try what they remember, and are locked out
        await sign_in(gw, user["username"], "what was it again")
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 401
    admin = await gw.admin_headers()
    path = f"/v1/admin/users/{user['user_id']}/password"
    new = "a fresh pass phrase to pass on"
    r = await gw.http.post(path, json={"password": new}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user["user_id"]
    assert "password" not in r.text
    assert new not in r.text
    assert r.headers["etag"] == f'"{r.json()["version"]}"'
    assert (await sign_in(gw, user["username"], new)).status_code == 200  # the lock is gone
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 401
    renewed = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert renewed.status_code == 401  # the sign-ins made before end, at once
    assert (await gw.http.get("/v1/me", headers=bearer(first["access_token"]))).status_code == 401


async def test_a_new_password_set_by_an_admin_follows_the_policy(gw: Gateway) -> None:
    user = await gw.create_user(areas=["1201"])
    admin = await gw.admin_headers()
    path = f"/v1/admin/users/{user['user_id']}/password"
    for body, field in (
        ({"password": "short"}, "password"),
        ({"password": f"my name is {user['username']}!"}, "password"),
        ({"password": ""}, "password"),
        ({"password": "x" * 257}, "password"),
        ({}, "password"),
        ({"password": "a long enough passphrase", "user_id": "usr_x"}, "user_id"),
    ):
        r = await gw.http.post(path, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]]
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 200
    stale = {**admin, "If-Match": '"999"'}
    r = await gw.http.post(path, json={"password": "a long enough passphrase"}, headers=stale)
    assert r.status_code == 412, r.text


async def test_only_an_admin_over_the_user_s_areas_sets_their_password(gw: Gateway) -> None:
    user = await gw.create_user(areas=["1201"])
    body = {"password": "a long enough passphrase"}
    path = f"/v1/admin/users/{user['user_id']}/password"
    _, elsewhere = await gw.client_token(org_type="government", scopes=["admin"], areas=["1202"])
    assert (await gw.http.post(path, json=body, headers=bearer(elsewhere))).status_code == 404
    _, reader = await gw.client_token(scopes=["registry:read"])
    assert (await gw.http.post(path, json=body, headers=bearer(reader))).status_code == 403
    assert (await gw.http.post(path, json=body)).status_code == 401
    admin = await gw.admin_headers()
    missing = "/v1/admin/users/usr_missing/password"
    assert (await gw.http.post(missing, json=body, headers=admin)).status_code == 404
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 200
