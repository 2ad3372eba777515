"""The gateway's rules: secrets, scopes, lockout, rate limits, a user's language. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from libs.common.auth import SCOPES

# scrypt at the interactive-login strength (about 16 MiB and tens of milliseconds).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_HASH_SCHEME = "scrypt"

BOOTSTRAP_ADMIN = "admin"


# ---------------------------------------------------------------- identifiers and secrets


def new_client_id() -> str:
    """A fresh client id (also the token `sub`)."""
    return "cli_" + secrets.token_hex(10)


def new_user_id() -> str:
    """A fresh user id (the token `sub` of a user; never the username)."""
    return "usr_" + secrets.token_hex(10)


def new_client_secret() -> str:
    """A client secret with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


REFRESH_TOKEN_PREFIX = "krt_"
# The longest string taken for a refresh token (one is 47 characters): anything longer is
# refused unread.
_REFRESH_TOKEN_MAX = 100


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, urlsafe, after a prefix that names it."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_refresh_token(token: str) -> bool:
    """Whether `token` has the form of a refresh token (whether it is known is another matter)."""
    return token.startswith(REFRESH_TOKEN_PREFIX) and len(token) <= _REFRESH_TOKEN_MAX


def refresh_token_hash(token: str) -> bytes:
    """What is kept of a refresh token: its SHA-256 (256 random bits need no slow hash)."""
    return hashlib.sha256(token.encode()).digest()


def new_refresh_family() -> str:
    """The id of the refresh tokens of one sign-in."""
    return secrets.token_hex(16)


def new_kid(now: float | None = None) -> str:
    """A key id that sorts by creation day and is unique."""
    day = time.strftime("%Y%m%d", time.gmtime(now))
    return f"{day}-{secrets.token_hex(6)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def password_problem(username: str, password: str, minimum: int) -> str | None:
    """What is wrong with a user's new password under the policy (None: nothing): at least
    `minimum` characters, and not containing the username."""
    if len(password) < minimum:
        return f"must be at least {minimum} characters long"
    if username.lower() in password.lower():
        return "must not contain the username"
    return None


def hash_secret(secret: str) -> str:
    """A slow salted hash of a secret or password: `scrypt$n$r$p$salt$digest`."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        (_HASH_SCHEME, str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Whether the secret matches the stored hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _HASH_SCHEME:
            return False
        candidate = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(candidate, _unb64(digest))
    except (ValueError, MemoryError):
        return False


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no secret matches: verified against when the principal does not exist,
    so that an unknown name costs as much time as a wrong secret."""
    return hash_secret(secrets.token_urlsafe(32))


def secret_fingerprint(stored_hash: str, secret: str) -> bytes:
    """A fast keyed digest of a verified client secret, to skip scrypt on the next request.

    Only used for client secrets, which carry 256 bits of entropy.
    """
    return hmac.new(stored_hash.encode(), secret.encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------- principals


class RuleViolation(ValueError):
    """A request that breaks a gateway rule; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_principal(org_type: str, scopes: Iterable[str]) -> None:
    """Rules on a new client or user beyond field validation."""
    if "admin" in scopes and org_type != "government":
        raise RuleViolation("scopes", "the admin scope is only for government principals")


# The languages a user may choose for what Komar shows them (English, Khmer); new users and
# API clients read English.
LOCALES = ("en", "km")
DEFAULT_LOCALE = "en"


def normalized(values: Iterable[str]) -> list[str]:
    """Deduplicated and sorted."""
    return sorted(set(values))


def granted_scopes(held: Iterable[str], requested: str | None) -> list[str]:
    """RFC 6749 §3.3: the requested subset of the held scopes, or all of them.

    Raises RuleViolation("scope", …) when asking for a scope not held or unknown.
    """
    held_set = set(held)
    if requested is None or not requested.strip():
        return sorted(held_set)
    wanted = set(requested.split())
    unknown = wanted - SCOPES
    if unknown:
        raise RuleViolation("scope", "unknown scope requested")
    if not wanted <= held_set:
        raise RuleViolation("scope", "the requested scope exceeds what this principal holds")
    return sorted(wanted)


def access_claims(
    sub: str,
    org: str,
    org_type: str,
    scopes: Iterable[str],
    areas: Iterable[str],
    username: str | None = None,
) -> dict[str, Any]:
    """The Komar claims of an access token (docs/api-guide.md#tokens); jwt.sign adds the
    standard ones. A user's token also names the account (`preferred_username`, as OpenID
    Connect does): a casework worker who signs in is linked to their record by it."""
    claims: dict[str, Any] = {
        "sub": sub,
        "org": org,
        "org_type": org_type,
        "scope": " ".join(scopes),
        "areas": list(areas),
    }
    if username is not None:
        claims["preferred_username"] = username
    return claims


# ---------------------------------------------------------------- login lockout


def is_locked(locked_until_epoch: float | None, now_epoch: float) -> bool:
    """Whether a lockout is still running."""
    return locked_until_epoch is not None and locked_until_epoch > now_epoch


# ---------------------------------------------------------------- rate limits


class RateLimiter:
    """Token buckets keyed by principal (or address): `rate` per second, up to `burst`."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, list[float]] = {}

    def take(
        self, key: str, now: float, rate: float | None = None, burst: float | None = None
    ) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until one is available."""
        rate = rate or self.rate
        burst = burst or self.burst
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > burst:
            tokens = burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate

    def refund(self, key: str) -> None:
        """Give back a token spent to reserve an attempt that turned out well."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[0] = min(self.burst, bucket[0] + 1.0)

    def peek(self, key: str, now: float, rate: float | None = None) -> float:
        """Seconds until the key may spend a token (0.0 when it may now), without spending."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        rate = rate or self.rate
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate

    def forget_idle(self, now: float, idle_s: float = 600.0) -> int:
        """Drop buckets untouched for `idle_s` (refilled long since: they hold no information)."""
        idle = [k for k, (_, at) in self._buckets.items() if now - at > idle_s]
        for key in idle:
            del self._buckets[key]
        return len(idle)


def burst_for(rate: float, default_rate: float, default_burst: int) -> float:
    """A client's burst when it carries its own rate: the default burst scaled to its rate."""
    return float(max(1, math.ceil(rate * default_burst / default_rate)))


def retry_after(seconds: float) -> str:
    """A Retry-After value in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
