"""GET and PATCH /v1/me: the caller's profile, and the language a user chose."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.gateway.conftest import Gateway, bearer

PROBLEM = "application/problem+json"
MERGE_PATCH = "application/merge-patch+json"


async def signed_in_user(gw: Gateway, **fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    user = await gw.create_user(**fields)
    return user, bearer(await gw.user_token(user["username"], user["password"]))


async def patch_me(
    gw: Gateway,
    headers: dict[str, str],
    body: Any,
    if_match: str | None,
    content_type: str = MERGE_PATCH,
) -> Any:
    extra = {"Content-Type": content_type}
    if if_match is not None:
        extra["If-Match"] = if_match
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await gw.http.patch("/v1/me", content=content, headers={**headers, **extra})


async def test_a_user_reads_their_profile(gw: Gateway) -> None:
    user, headers = await signed_in_user(
        gw, name="Sophea Keo", scopes=["registry:write", "registry:read"], areas=["1201"]
    )
    response = await gw.http.get("/v1/me", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{user["version"]}"'
    assert response.json() == {
        "sub": user["user_id"],
        "kind": "user",
        "username": user["username"],
        "name": "Sophea Keo",
        "org": user["org"],
        "org_type": "government",
        "scopes": ["registry:read", "registry:write"],
        "areas": ["1201"],
        "locale": "en",
    }


async def test_a_client_reads_its_profile_with_its_tokens_scopes(gw: Gateway) -> None:
    client, token = await gw.client_token(
        scope="registry:read", scopes=["registry:read", "funds:read"], areas=["12"]
    )
    response = await gw.http.get("/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": client["client_id"],
        "kind": "client",
        "username": None,
        "name": client["name"],
        "org": client["org"],
        "org_type": "partner",
        "scopes": ["registry:read"],  # the token's, narrowed at /oauth/token
        "areas": ["12"],
        "locale": "en",
    }


async def test_a_user_changes_their_language_and_it_is_remembered(gw: Gateway) -> None:
    user, headers = await signed_in_user(gw)
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]

    changed = await patch_me(gw, headers, {"locale": "km"}, etag)
    assert changed.status_code == 200, changed.text
    assert changed.json()["locale"] == "km"
    assert changed.headers["etag"] != etag
    read = await gw.http.get("/v1/me", headers=headers)
    assert read.json()["locale"] == "km"
    assert read.headers["etag"] == changed.headers["etag"]

    # Remembered beyond the token: the next sign-in reads Khmer too.
    again = bearer(await gw.user_token(user["username"], user["password"]))
    assert (await gw.http.get("/v1/me", headers=again)).json()["locale"] == "km"

    # Plain JSON is taken as well; the same language again changes nothing (same ETag).
    back = await patch_me(
        gw, again, {"locale": "en"}, changed.headers["etag"], content_type="application/json"
    )
    assert back.status_code == 200, back.text
    assert back.json()["locale"] == "en"
    same = await patch_me(gw, again, {"locale": "en"}, back.headers["etag"])
    assert same.status_code == 200, same.text
    assert same.headers["etag"] == back.headers["etag"]


async def test_if_match_is_optional_but_a_stale_one_is_refused(gw: Gateway) -> None:
    _, headers = await signed_in_user(gw)
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]
    stale = await patch_me(gw, headers, {"locale": "km"}, '"99"')
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"].startswith(PROBLEM)
    assert (await gw.http.get("/v1/me", headers=headers)).json()["locale"] == "en"
    # Without If-Match the last choice wins (the language is the user's alone).
    blind = await patch_me(gw, headers, {"locale": "km"}, None)
    assert blind.status_code == 200, blind.text
    assert blind.json()["locale"] == "km"
    assert (await patch_me(gw, headers, {"locale": "en"}, etag)).status_code == 412


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"locale": "fr"}, "locale"),
        ({"locale": "KM"}, "locale"),
        ({"locale": 1}, "locale"),
        ({"locale": ["km"]}, "locale"),
        ({"locale": "km", "theme": "dark"}, "theme"),
        ({"name": "Someone Else"}, "name"),
        ({"locale": None}, "body"),  # a language cannot be cleared
        ({}, "body"),  # changes nothing
        (["locale", "km"], "body"),
        (b"locale=km", None),  # not JSON
    ],
)
async def test_bad_patches_are_422_naming_the_field(
    gw: Gateway, body: Any, field: str | None
) -> None:
    _, headers = await signed_in_user(gw)
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]
    response = await patch_me(gw, headers, body, etag)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    if field is not None:
        assert field in {e["field"] for e in problem["errors"]}, problem
    if body == {"locale": None}:
        assert "locale" in problem["detail"]
    read = await gw.http.get("/v1/me", headers=headers)
    assert read.json()["locale"] == "en"
    assert read.headers["etag"] == etag


async def test_without_a_valid_token_it_is_401(gw: Gateway) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic YWRtaW46eA=="}):
        read = await gw.http.get("/v1/me", headers=headers)
        assert read.status_code == 401, read.text
        assert read.headers["content-type"].startswith(PROBLEM)
        change = await patch_me(gw, headers, {"locale": "km"}, '"1"')
        assert change.status_code == 401, change.text
        assert change.headers["content-type"].startswith(PROBLEM)


async def test_an_api_client_has_no_language_to_change(gw: Gateway) -> None:
    _, token = await gw.client_token()
    headers = bearer(token)
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]
    for body in ({"locale": "km"}, {"locale": "fr"}):
        response = await patch_me(gw, headers, body, etag)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "only users" in response.json()["detail"]
    assert (await gw.http.get("/v1/me", headers=headers)).json()["locale"] == "en"


async def test_a_disabled_users_token_is_401(gw: Gateway) -> None:
    user, headers = await signed_in_user(gw)
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]
    admin = await gw.admin_headers()
    disabled = await gw.http.post(f"/v1/admin/users/{user['user_id']}/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert (await gw.http.get("/v1/me", headers=headers)).status_code == 401
    assert (await patch_me(gw, headers, {"locale": "km"}, etag)).status_code == 401


async def test_the_openapi_document_describes_both(gw: Gateway) -> None:
    doc = (await gw.http.get("/openapi.json")).json()
    item = doc["paths"]["/v1/me"]
    assert item["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MeOut"
    }
    patch = item["patch"]
    assert MERGE_PATCH in patch["requestBody"]["content"]
    assert {"401", "403", "412", "422"} <= set(patch["responses"])
    (if_match,) = [p for p in patch["parameters"] if p["name"] == "If-Match"]
    assert if_match["in"] == "header"
    assert if_match["required"] is False
    locale = doc["components"]["schemas"]["MePatch"]["properties"]["locale"]
    assert {"enum": ["en", "km"], "type": "string"} in locale["anyOf"]


# ---------------------------------------------------------------- the password

NEW = "a new and longer pass phrase"


async def change(gw: Gateway, headers: dict[str, str], current: str, new: str) -> Any:
    return await gw.http.post(
        "/v1/me/password",
        json={"current_password": current, "new_password": new},
        headers=headers,
    )


async def sign_in(gw: Gateway, username: str, password: str) -> Any:
    return await gw.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )


async def test_a_user_changes_their_password_and_their_sign_ins_end(gw: Gateway) -> None:
    user = await gw.create_user()
    first = (await sign_in(gw, user["username"], user["password"])).json()
    headers = bearer(first["access_token"])
    etag = (await gw.http.get("/v1/me", headers=headers)).headers["etag"]
    # Tokens count time in whole seconds: one issued within about a second before a change
    # may pass (guard.check), so this one is older than that.
    await asyncio.sleep(2.1)

    r = await change(gw, headers, user["password"], NEW)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 401
    assert (await sign_in(gw, user["username"], NEW)).status_code == 200
    # The sign-in made with the old password cannot be renewed.
    renewed = await gw.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert renewed.status_code == 401, renewed.text
    assert renewed.json()["error"] == "invalid_grant"
    # The tokens issued before are refused at once, here and through the proxy.
    for path in ("/v1/me", "/v1/registry/echo/x"):
        refused = await gw.http.get(path, headers=headers)
        assert refused.status_code == 401, (path, refused.text)
        assert "sign in again" in refused.json()["detail"]
    again = (await sign_in(gw, user["username"], NEW)).json()
    headers = bearer(again["access_token"])
    assert (await gw.http.get("/v1/registry/echo/x", headers=headers)).status_code == 200
    assert (await gw.http.get("/v1/me", headers=headers)).headers["etag"] != etag
    # The same request again: its current password is the old one now.
    repeated = await change(gw, headers, user["password"], NEW)
    assert repeated.status_code == 422
    assert [e["field"] for e in repeated.json()["errors"]] == ["current_password"]


async def test_a_wrong_current_password_is_a_failed_sign_in(gw: Gateway) -> None:
    user = await gw.create_user()
    headers = bearer(await gw.user_token(user["username"], user["password"]))
    for _ in range(5):  # the lock-out's count (KOMAR_LOGIN_MAX_FAILURES)
        r = await change(gw, headers, "not my password at all", NEW)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        (error,) = r.json()["errors"]
        assert error["field"] == "current_password"
        assert "not my password" not in r.text  # what was typed is never echoed
    # Locked: neither a sign-in nor a change with the right password goes through.
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 401
    assert (await change(gw, headers, user["password"], NEW)).status_code == 422
    admin = await gw.admin_headers()
    r = await gw.http.post(f"/v1/admin/users/{user['user_id']}/unlock", headers=admin)
    assert r.status_code == 200, r.text
    assert (await change(gw, headers, user["password"], NEW)).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"current_password": "x", "new_password": "short"}, "new_password"),
        ({"current_password": "x", "new_password": "with {username} inside it"}, "new_password"),
        ({"current_password": "{password}", "new_password": "{password}"}, "new_password"),
        ({"current_password": "x", "new_password": "a control\x00character in it"}, "new_password"),
        ({"current_password": "x", "new_password": "x" * 257}, "new_password"),
        ({"new_password": NEW}, "current_password"),
        ({"current_password": "x", "new_password": NEW, "extra": 1}, "extra"),
        ({"current_password": 12345678901234, "new_password": NEW}, "current_password"),
    ],
)
async def test_a_new_password_against_the_policy_is_422_naming_it(
    gw: Gateway, body: dict[str, Any], field: str
) -> None:
    user = await gw.create_user()
    headers = bearer(await gw.user_token(user["username"], user["password"]))
    sent = {k: v.format(**user) if isinstance(v, str) else v for k, v in body.items()}
    r = await gw.http.post("/v1/me/password", json=sent, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert field in [e["field"] for e in r.json()["errors"]]
    assert (await sign_in(gw, user["username"], user["password"])).status_code == 200


async def test_only_a_signed_in_user_changes_a_password(gw: Gateway) -> None:
    body = {"current_password": "whatever it is", "new_password": NEW}
    assert (await gw.http.post("/v1/me/password", json=body)).status_code == 401
    _, token = await gw.client_token()
    r = await gw.http.post("/v1/me/password", json=body, headers=bearer(token))
    assert r.status_code == 403, r.text
    user = await gw.create_user()
    headers = bearer(await gw.user_token(user["username"], user["password"]))
    admin = await gw.admin_headers()
    await gw.http.post(f"/v1/admin/users/{user['user_id']}/disable", headers=admin)
    body["current_password"] = user["password"]
    assert (await gw.http.post("/v1/me/password", json=body, headers=headers)).status_code == 401


async def test_the_openapi_document_describes_the_password_change(gw: Gateway) -> None:
    doc = (await gw.http.get("/openapi.json")).json()
    post = doc["paths"]["/v1/me/password"]["post"]
    assert {"204", "401", "403", "422", "429"} <= set(post["responses"])
    schema = doc["components"]["schemas"]["PasswordChange"]
    assert set(schema["required"]) == {"current_password", "new_password"}
