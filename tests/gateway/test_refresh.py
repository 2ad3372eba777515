"""Refresh tokens (RFC 6749 §6) of users who sign in with a password: rotation, reuse
detection, idle and absolute expiry, disabled and locked users, revocation (RFC 7009), the
purge, and tokens kept out of the logs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from gateway import domain, store
from gateway.models import refresh_tokens, users
from gateway.settings import GatewaySettings
from libs.common.db import Database
from libs.common.logging import get_logger
from tests.gateway.conftest import Gateway, bearer
from tests.gateway.test_tokens import assert_oauth_error, claims_of
from tests.support import production_logging as support_logging

REFUSED = "the refresh token is invalid, expired or revoked; sign in again"


@pytest.fixture
def db(gateway_app: FastAPI) -> Database:
    database: Database = gateway_app.state.runtime.db
    return database


async def sign_in(gw: Gateway, user: dict[str, Any], scope: str | None = None) -> dict[str, Any]:
    form = {"grant_type": "password", "username": user["username"], "password": user["password"]}
    if scope is not None:
        form["scope"] = scope
    response = await gw.http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(gw: Gateway, token: str, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    if scope is not None:
        form["scope"] = scope
    return await gw.http.post("/oauth/token", data=form)


async def refreshed(gw: Gateway, token: str, scope: str | None = None) -> dict[str, Any]:
    response = await refresh(gw, token, scope)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def revoke(gw: Gateway, token: str, **extra: str) -> httpx.Response:
    return await gw.http.post("/oauth/revoke", data={"token": token, **extra})


def assert_refused(response: httpx.Response) -> None:
    """The one answer of every refused refresh."""
    assert_oauth_error(response, 401, "invalid_grant")
    assert response.json()["error_description"] == REFUSED


def seen(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    return (
        response.status_code,
        response.content,
        {k: v for k, v in response.headers.items() if k != "x-request-id"},
    )


async def family_of(db: Database, token: str) -> str:
    async with db.transaction() as conn:
        family = await conn.scalar(
            select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.token_hash == domain.refresh_token_hash(token)
            )
        )
    assert isinstance(family, str)
    return family


async def age(db: Database, token: str, **columns: timedelta) -> None:
    """Move a stored token's times into the past (`idle_expires_at=timedelta(...)`: now minus
    it), for the whole family when the column is the family's end."""
    values = {name: func.now() - ago for name, ago in columns.items()}
    where = refresh_tokens.c.token_hash == domain.refresh_token_hash(token)
    if "family_expires_at" in columns:
        where = refresh_tokens.c.family_id == await family_of(db, token)
    async with db.transaction() as conn:
        await conn.execute(update(refresh_tokens).where(where).values(**values))


# ---------------------------------------------------------------- who gets one


async def test_a_password_sign_in_answers_a_refresh_token_a_client_none(gw: Gateway) -> None:
    user = await gw.create_user()
    body = await sign_in(gw, user)
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    token = body["refresh_token"]
    assert token.startswith("krt_")
    assert len(token) == len("krt_") + 43  # 32 random bytes, urlsafe
    assert token != (await sign_in(gw, user))["refresh_token"]

    client = await gw.create_client()
    answer = await gw.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert answer.status_code == 200, answer.text
    assert "refresh_token" not in answer.json()


async def test_only_the_hash_is_kept(gw: Gateway, db: Database) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    async with db.transaction() as conn:
        rows = (
            await conn.execute(
                select(refresh_tokens).where(refresh_tokens.c.user_id == user["user_id"])
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].token_hash == domain.refresh_token_hash(token)
    assert token.encode() not in repr(rows[0]).encode()


# ---------------------------------------------------------------- rotation


async def test_a_refresh_answers_a_working_token_and_the_next_refresh_token(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user(scopes=["registry:read", "funds:read"], areas=["120101"])
    first = await sign_in(gw, user)
    response = await refresh(gw, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == gateway_settings.token_ttl_s
    assert body["scope"] == "funds:read registry:read"
    assert body["refresh_token"].startswith("krt_")
    assert body["refresh_token"] != first["refresh_token"]
    claims = claims_of(body["access_token"])
    assert claims["sub"] == user["user_id"]
    assert claims["preferred_username"] == user["username"]
    assert claims["scope"] == "funds:read registry:read"
    assert claims["areas"] == ["120101"]
    assert claims["org"] == user["org"]
    assert claims["org_type"] == "government"
    assert claims["jti"] != claims_of(first["access_token"])["jti"]
    me = await gw.http.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["sub"] == user["user_id"]
    # The next one works in turn, and so on.
    again = await refreshed(gw, body["refresh_token"])
    assert claims_of(again["access_token"])["sub"] == user["user_id"]


async def test_a_refresh_carries_the_users_claims_as_they_are_now(
    gw: Gateway, db: Database
) -> None:
    user = await gw.create_user(scopes=["registry:read", "registry:write"], areas=["1201"])
    token = (await sign_in(gw, user))["refresh_token"]
    # Changed since the sign-in: areas, organisation, and scopes (one lost, one gained).
    async with db.transaction() as conn:
        await conn.execute(
            update(users)
            .where(users.c.user_id == user["user_id"])
            .values(areas=["120102"], org="moswvy-new", scopes=["registry:read", "funds:read"])
        )
    body = await refreshed(gw, token)
    claims = claims_of(body["access_token"])
    assert claims["areas"] == ["120102"]
    assert claims["org"] == "moswvy-new"
    # The scopes held now, within those of the sign-in: lost ones go, new ones do not come.
    assert claims["scope"] == body["scope"] == "registry:read"


async def test_a_refresh_may_ask_for_fewer_scopes_never_more(gw: Gateway) -> None:
    user = await gw.create_user(scopes=["registry:read", "registry:write", "funds:read"])
    signed_in = await sign_in(gw, user, scope="registry:read registry:write")
    narrower = await refreshed(gw, signed_in["refresh_token"], scope="registry:read")
    assert narrower["scope"] == "registry:read"
    assert claims_of(narrower["access_token"])["scope"] == "registry:read"
    # The family keeps the scopes of the sign-in: asked for nothing, they all come back.
    token = narrower["refresh_token"]
    for beyond in ("funds:read", "registry:read admin", "no:such:scope"):
        assert_oauth_error(await refresh(gw, token, scope=beyond), 400, "invalid_scope")
    # Refused for its scope, the token was not used up.
    full = await refreshed(gw, token)
    assert full["scope"] == "registry:read registry:write"


# ---------------------------------------------------------------- reuse


async def test_a_used_token_presented_again_revokes_its_family(gw: Gateway) -> None:
    user = await gw.create_user()
    first = (await sign_in(gw, user))["refresh_token"]
    other_sign_in = (await sign_in(gw, user))["refresh_token"]
    second = (await refreshed(gw, first))["refresh_token"]
    third = (await refreshed(gw, second))["refresh_token"]

    assert_refused(await refresh(gw, first))  # used before: someone else holds the family
    assert_refused(await refresh(gw, third))  # so the newest token of it is refused too
    assert_refused(await refresh(gw, second))
    # Another sign-in of the same user is not concerned.
    assert (await refresh(gw, other_sign_in)).status_code == 200


async def test_of_concurrent_refreshes_of_one_token_exactly_one_succeeds(gw: Gateway) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    answers = await asyncio.gather(*(refresh(gw, token) for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * 19
    for answer in answers:
        if answer.status_code != 200:
            assert_refused(answer)
    # The others were reuses of a used token: the family is revoked, the winner's next
    # token with it (the dashboard refreshes a session one request at a time).
    (winner,) = [a.json() for a in answers if a.status_code == 200]
    assert_refused(await refresh(gw, winner["refresh_token"]))


# ---------------------------------------------------------------- expiry


async def test_a_token_not_used_within_the_idle_time_expires(gw: Gateway, db: Database) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    await age(db, token, idle_expires_at=timedelta(seconds=1))
    assert_refused(await refresh(gw, token))


async def test_each_refresh_restarts_the_idle_time(
    gw: Gateway, db: Database, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    # Nearly idle, then used: the next token has the whole idle time again.
    await age(db, token, idle_expires_at=-timedelta(seconds=5))
    following = (await refreshed(gw, token))["refresh_token"]
    async with db.transaction() as conn:
        left = await conn.scalar(
            select(func.extract("epoch", refresh_tokens.c.idle_expires_at - func.now())).where(
                refresh_tokens.c.token_hash == domain.refresh_token_hash(following)
            )
        )
    assert left is not None
    assert gateway_settings.refresh_idle_s - 60 < float(left) <= gateway_settings.refresh_idle_s


async def test_a_family_ends_at_its_absolute_time_however_often_refreshed(
    gw: Gateway, db: Database, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    async with db.transaction() as conn:
        started = await conn.scalar(
            select(refresh_tokens.c.family_expires_at).where(
                refresh_tokens.c.token_hash == domain.refresh_token_hash(token)
            )
        )
        now = await store.db_now(conn)
    assert isinstance(started, datetime)
    assert abs((started - now).total_seconds() - gateway_settings.refresh_absolute_s) < 60
    for _ in range(3):
        token = (await refreshed(gw, token))["refresh_token"]
    async with db.transaction() as conn:
        ends = (
            await conn.execute(
                select(refresh_tokens.c.family_expires_at).where(
                    refresh_tokens.c.family_id == await family_of(db, token)
                )
            )
        ).scalars()
        assert set(ends) == {started}  # a refresh never moves the family's end
    await age(db, token, family_expires_at=timedelta(seconds=1))
    assert_refused(await refresh(gw, token))


# ---------------------------------------------------------------- the user


async def test_a_disabled_user_cannot_refresh_nor_after_being_enabled_again(
    gw: Gateway,
) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    admin = await gw.admin_headers()
    url = f"/v1/admin/users/{user['user_id']}"
    assert (await gw.http.post(f"{url}/disable", headers=admin)).status_code == 200
    assert_refused(await refresh(gw, token))
    assert (await gw.http.post(f"{url}/enable", headers=admin)).status_code == 200
    # Disabling revoked the user's sign-ins: enabled again, they sign in again.
    assert_refused(await refresh(gw, token))
    assert (await refresh(gw, (await sign_in(gw, user))["refresh_token"])).status_code == 200


async def test_a_locked_out_user_cannot_refresh_until_unlocked(
    gw: Gateway, gateway_settings: GatewaySettings
) -> None:
    user = await gw.create_user()
    token = (await sign_in(gw, user))["refresh_token"]
    guess = {"grant_type": "password", "username": user["username"], "password": "a guess!"}
    for _ in range(gateway_settings.login_max_failures):
        await gw.http.post("/oauth/token", data=guess)
    assert_refused(await refresh(gw, token))
    admin = await gw.admin_headers()
    unlocked = await gw.http.post(f"/v1/admin/users/{user['user_id']}/unlock", headers=admin)
    assert unlocked.status_code == 200, unlocked.text
    # Refused while locked, the token was not used up: the sign-in goes on.
    assert (await refresh(gw, token)).status_code == 200


async def test_every_refusal_answers_alike(gw: Gateway, db: Database) -> None:
    admin = await gw.admin_headers()
    users_ = [await gw.create_user() for _ in range(5)]
    tokens = [(await sign_in(gw, u))["refresh_token"] for u in users_]
    used, expired, ended, revoked, disabled = tokens
    await refreshed(gw, used)
    await age(db, expired, idle_expires_at=timedelta(seconds=1))
    await age(db, ended, family_expires_at=timedelta(seconds=1))
    assert (await revoke(gw, revoked)).status_code == 200
    await gw.http.post(f"/v1/admin/users/{users_[4]['user_id']}/disable", headers=admin)
    attempts = {
        "unknown": domain.new_refresh_token(),
        "not a refresh token": "x" * 47,
        "too long": "krt_" + "x" * 200,
        "used": used,
        "idle": expired,
        "family ended": ended,
        "revoked": revoked,
        "user disabled": disabled,
    }
    answers = {}
    for what, token in attempts.items():
        response = await refresh(gw, token)
        assert_refused(response)
        answers[what] = seen(response)
    assert len(set(map(repr, answers.values()))) == 1, answers


async def test_malformed_refresh_requests(gw: Gateway) -> None:
    assert_oauth_error(
        await gw.http.post("/oauth/token", data={"grant_type": "refresh_token"}),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        await gw.http.post(
            "/oauth/token", json={"grant_type": "refresh_token", "refresh_token": "krt_x"}
        ),
        400,
        "invalid_request",
    )


# ---------------------------------------------------------------- revocation


async def test_revoking_a_token_ends_its_sign_in(gw: Gateway) -> None:
    user = await gw.create_user()
    first = (await sign_in(gw, user))["refresh_token"]
    other_sign_in = (await sign_in(gw, user))["refresh_token"]
    latest = (await refreshed(gw, first))["refresh_token"]
    response = await revoke(gw, latest, token_type_hint="refresh_token")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    assert_refused(await refresh(gw, latest))
    assert_refused(await refresh(gw, first))
    # Revoked again, or revoked with an older token of the family: the same answer.
    assert (await revoke(gw, latest)).status_code == 200
    assert (await revoke(gw, first)).status_code == 200
    assert (await refresh(gw, other_sign_in)).status_code == 200


async def test_revoking_with_an_older_token_ends_the_sign_in_too(gw: Gateway) -> None:
    user = await gw.create_user()
    first = (await sign_in(gw, user))["refresh_token"]
    latest = (await refreshed(gw, first))["refresh_token"]
    assert (await revoke(gw, first)).status_code == 200
    assert_refused(await refresh(gw, latest))


async def test_revoking_what_is_not_a_known_token_answers_the_same(gw: Gateway) -> None:
    user = await gw.create_user()
    signed_in = await sign_in(gw, user)
    known = await revoke(gw, (await sign_in(gw, user))["refresh_token"])
    for token in (
        "garbage",
        domain.new_refresh_token(),
        "krt_" + "x" * 500,
        signed_in["access_token"],  # an access token runs out by itself
    ):
        for hint in ({}, {"token_type_hint": "access_token"}, {"token_type_hint": "nonsense"}):
            answer = await revoke(gw, token, **hint)
            assert seen(answer) == seen(known), (token, hint)
    assert (await refresh(gw, signed_in["refresh_token"])).status_code == 200


async def test_a_revocation_during_a_refresh_leaves_no_token_of_the_family_working(
    gw: Gateway,
) -> None:
    user = await gw.create_user()
    for _ in range(10):
        token = (await sign_in(gw, user))["refresh_token"]
        refreshing, revoking = await asyncio.gather(refresh(gw, token), revoke(gw, token))
        assert revoking.status_code == 200
        if refreshing.status_code == 200:
            # The refresh came first, or while the revocation was under way: the token it
            # answered belongs to a revoked family all the same.
            assert_refused(await refresh(gw, refreshing.json()["refresh_token"]))
        else:
            assert_refused(refreshing)


async def test_malformed_revocations(gw: Gateway) -> None:
    assert_oauth_error(await gw.http.post("/oauth/revoke", data={}), 400, "invalid_request")
    assert_oauth_error(
        await gw.http.post("/oauth/revoke", json={"token": "krt_x"}), 400, "invalid_request"
    )


# ---------------------------------------------------------------- purge


async def test_the_purge_deletes_ended_and_idle_tokens_and_keeps_what_detects_reuse(
    gw: Gateway, db: Database, gateway_app: FastAPI
) -> None:
    user = await gw.create_user()
    used = (await sign_in(gw, user))["refresh_token"]
    live = (await refreshed(gw, used))["refresh_token"]
    idle = (await sign_in(gw, user))["refresh_token"]
    ended = (await sign_in(gw, user))["refresh_token"]
    revoked = (await sign_in(gw, user))["refresh_token"]
    await age(db, idle, idle_expires_at=timedelta(seconds=1))
    await age(db, ended, family_expires_at=timedelta(seconds=1))
    await revoke(gw, revoked)
    # The used token is past its idle time too: kept all the same, until its family ends.
    await age(db, used, idle_expires_at=timedelta(seconds=1))

    await gateway_app.state.runtime._purge_refresh_tokens()

    async with db.transaction() as conn:
        kept = set(
            (
                await conn.execute(
                    select(refresh_tokens.c.token_hash).where(
                        refresh_tokens.c.user_id == user["user_id"]
                    )
                )
            ).scalars()
        )
    hashes = {t: domain.refresh_token_hash(t) for t in (used, live, idle, ended, revoked)}
    assert kept == {hashes[used], hashes[live], hashes[revoked]}
    # The used token still gives its reuse away.
    assert_refused(await refresh(gw, used))
    assert_refused(await refresh(gw, live))


# ---------------------------------------------------------------- metadata and logs


async def test_the_metadata_names_the_grant_and_the_revocation_endpoint(gw: Gateway) -> None:
    metadata = (await gw.http.get("/.well-known/oauth-authorization-server")).json()
    assert "refresh_token" in metadata["grant_types_supported"]
    assert metadata["revocation_endpoint"] == "http://gateway.test/oauth/revoke"


@pytest.fixture
def production_logging() -> Iterator[None]:
    """The processes' logging for one test (tests.support.production_logging)."""
    with support_logging("gateway"):
        yield


@pytest.mark.usefixtures("production_logging")
async def test_tokens_never_reach_the_logs(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    user = await gw.create_user()
    signed_in = await sign_in(gw, user)
    first = signed_in["refresh_token"]
    second = await refreshed(gw, first)
    assert_refused(await refresh(gw, first))  # reuse: logged as such
    await revoke(gw, second["refresh_token"])
    get_logger("tests").info(
        "test.tokens", refresh_token=first, access_token=signed_in["access_token"]
    )
    out, err = capsys.readouterr()
    logged = out + err
    assert "auth.refresh.reused" in logged
    assert "test.tokens" in logged
    for secret in (first, second["refresh_token"], signed_in["access_token"]):
        assert secret not in logged
    assert "krt_" not in logged
