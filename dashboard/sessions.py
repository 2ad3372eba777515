"""Sign-in sessions, kept in this process's memory: the browser holds only a random id.

The access token never reaches the browser: the cookie names a session, the session holds
the token. A session ends when it is idle too long, when the user signs out, or when its
token can no longer be renewed; what the user was typing when it ended is kept for them
(and only them) until they sign in again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

SESSION_COOKIE = "komar_session"
# The cookie of a browser that has not signed in: the sign-in form's CSRF token is bound to it.
VISITOR_COOKIE = "komar_visitor"
LANGUAGE_COOKIE = "komar_lang"
# Renew a token this long before it expires, so no request is sent with one about to lapse.
RENEW_BEFORE_S = 30.0
# An ended session is kept this long with its draft (what was typed when it ended), for its
# author to sign in again and find it.
DRAFT_TTL_S = 3600.0


@dataclass
class Profile:
    """Who the user is, as the gateway says."""

    sub: str
    username: str
    name: str
    org: str
    org_type: str
    scopes: frozenset[str]
    areas: tuple[str, ...]

    def may(self, *scopes: str) -> bool:
        return all(s in self.scopes for s in scopes)


@dataclass
class Draft:
    """A form the user had filled in when their session ended, to show them again."""

    path: str
    fields: dict[str, str]


@dataclass
class Session:
    id: str
    profile: Profile
    access_token: str
    expires_at: float  # time.monotonic() when the access token lapses
    refresh_token: str | None
    lang: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = field(default_factory=time.monotonic)
    draft: Draft | None = None
    ended: bool = False
    ended_at: float = 0.0
    # Messages for the next page shown ("Referral made."), after a redirect.
    flash: list[str] = field(default_factory=list)

    def needs_renewal(self) -> bool:
        return time.monotonic() >= self.expires_at - RENEW_BEFORE_S


class SessionStore:
    """Sessions by id, bounded: past `max_sessions` the least recently used goes first."""

    def __init__(self, max_sessions: int, idle_s: float) -> None:
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # Keys the visitor cookie to the sign-in form's CSRF token; a restart changes it, so
        # a sign-in form from before the restart is refused and shown again.
        self._visitor_key = secrets.token_bytes(32)

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self,
        profile: Profile,
        *,
        access_token: str,
        expires_in: float,
        refresh_token: str | None,
        lang: str,
    ) -> Session:
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(
            id=secrets.token_urlsafe(32),
            profile=profile,
            access_token=access_token,
            expires_at=time.monotonic() + expires_in,
            refresh_token=refresh_token,
            lang=lang,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The session of the cookie: live, or ended (idle too long, its token no longer
        renewable) and kept a while for the draft its author may come back to."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if session.ended:
            if now - session.ended_at > DRAFT_TTL_S:
                self._sessions.pop(session_id, None)
                return None
            return session
        if now - session.last_used > self.idle_s:
            self.end(session)
            return session
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session: Session, draft: Draft | None = None) -> None:
        """End a session: forget its tokens; keep its CSRF token (to recognise a form of
        its own still in flight) and a draft for its author."""
        if not session.ended:
            session.ended = True
            session.ended_at = time.monotonic()
        session.access_token = ""
        session.refresh_token = None
        session.draft = draft or session.draft

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def visitor_csrf(self, visitor: str) -> str:
        """The CSRF token of the sign-in form for the browser holding visitor cookie `visitor`."""
        return hmac.new(self._visitor_key, visitor.encode(), hashlib.sha256).hexdigest()

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [
            sid
            for sid, s in self._sessions.items()
            if (s.ended and now - s.ended_at > DRAFT_TTL_S)
            or (not s.ended and now - s.last_used > self.idle_s + DRAFT_TTL_S)
        ]:
            self._sessions.pop(sid, None)


def same_token(a: str, b: str) -> bool:
    """Constant-time comparison of two CSRF tokens."""
    return hmac.compare_digest(a.encode(), b.encode())


def public_fields(form: dict[str, Any]) -> dict[str, str]:
    """A form's fields worth keeping in a draft: never the CSRF token or a password."""
    return {
        k: str(v)
        for k, v in form.items()
        if k != "csrf" and "password" not in k and isinstance(v, str) and len(v) <= 10_000
    }
