"""Signing in and out, and the language switch."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard import i18n
from dashboard.client import SignInRefused
from dashboard.sessions import SESSION_COOKIE
from dashboard.web import Refused, View, attempt, local_path, quietly, view_of
from libs.common.inputs import control_character_in

router = APIRouter(include_in_schema=False)

MAX_USERNAME = 200
# The API's own limit of a password: a longer one is no account's, and is never cut short
# (a password cut to fit would be another password).
MAX_PASSWORD = 256


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/", expired: str = "") -> Response:
    view = view_of(request, signed_in=False)
    if view.session is not None and not view.session.ended:
        return view.redirect(local_path(next))
    notice = None
    if expired:
        notice = view.t("signin.expired")
    elif request.query_params.get("signed_out"):
        notice = view.t("signin.signed_out")
    return view.render(
        "sign_in.html", next=local_path(next), error=None, notice=notice, username=""
    )


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    view = view_of(request, signed_in=False)
    form = await view.form()
    username = form.get("username", "").strip()[:MAX_USERNAME]
    password = form.get("password", "")
    next_path = local_path(form.get("next"))
    error = None
    if (
        not username
        or not password
        or len(password) > MAX_PASSWORD
        or control_character_in(username + password)
    ):
        # (no account has a control character in its name or password: not sent on)
        error = view.t("signin.invalid")
    else:
        try:
            grant = await view.client.sign_in(username, password, view.origin)
        except SignInRefused as exc:
            if exc.reason == "busy":
                error = view.t("signin.busy", seconds=exc.retry_after or "60")
            else:
                error = view.t("signin.invalid")
    if error is not None:
        # 200, as for every form shown again with what to correct: the page is the answer.
        return view.render(
            "sign_in.html", next=next_path, error=error, notice=None, username=username
        )
    profile, locale = await view.client.profile(grant.access_token, view.origin)
    previous = view.session
    session = view.sessions.create(
        profile,
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        lang=i18n.language(locale),
    )
    if previous is not None:
        # What the same user typed before their session ended comes back; never another's.
        if previous.draft is not None and previous.profile.sub == profile.sub:
            session.draft = previous.draft
        view.sessions.drop(previous)
    view.session, view.lang = session, session.lang
    response = view.redirect(next_path)
    view.cookie(response, SESSION_COOKIE, session.id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    view = view_of(request, signed_in=False)
    if view.session is not None:
        if not view.session.ended:  # an ended session has nothing left to protect
            await view.form()
        if view.session.refresh_token:
            await view.client.revoke(view.session.refresh_token, view.origin)
        view.sessions.drop(view.session)
        view.session = None
    response = view.redirect("/sign-in?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def switch_language(request: Request) -> Response:
    """Switch the language; a signed-in user's choice is kept with their account."""
    view = view_of(request, signed_in=False)
    form = await view.form()
    lang = i18n.language(form.get("lang"))
    back = local_path(form.get("next"))
    view.lang = lang
    if view.session is not None and not view.session.ended:
        view.session.lang = lang
        # An account that cannot keep it (an API client), or a gateway not answering just
        # now: the language still switches here, for this session.
        await quietly(
            view.client.call(
                view.session,
                "PATCH",
                "/v1/me",
                origin=view.origin,
                json={"locale": lang},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )
    return view.redirect(back)


# ---------------------------------------------------------------- your password


def _password_page(view: View, errors: list[dict[str, str]], problem: str | None) -> Response:
    # Never filled in again: a password typed is not sent back in a page.
    return view.render("password.html", errors=errors, problem=problem)


@router.get("/account/password")
async def password_page(request: Request) -> Response:
    return _password_page(view_of(request), [], None)


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    view = view_of(request)
    form = await view.form()
    current = form.get("current_password", "")
    new = form.get("new_password", "")
    errors = [
        {"field": name, "message": view.t("password.too_long")}
        for name in ("current_password", "new_password")
        if len(form.get(name, "")) > MAX_PASSWORD
    ]
    if new != form.get("new_password_again", ""):
        errors.append({"field": "new_password_again", "message": view.t("password.mismatch")})
    if errors:
        return _password_page(view, errors, None)
    done = await attempt(view, view.client.change_password(view.user, current, new, view.origin))
    if isinstance(done, Refused):
        errors = [
            {"field": e["field"], "message": view.t("password.wrong_current")}
            if e["field"] == "current_password"
            else e
            for e in done.errors
        ]
        return _password_page(view, errors, None if errors else done.problem)
    return view.redirect("/", flash=view.t("password.changed"))
