"""Who is calling: the verified principal, its scopes and the places its areas cover.

What a principal may see and change of a child is libs.common.access (docs/api-guide.md#access).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from libs.common import jwt, places
from libs.common.errors import Forbidden, Unauthorized

COUNTRY = places.COUNTRY
SCOPES = frozenset(
    {
        "registry:read",
        "registry:write",
        "referrals:read",
        "referrals:write",
        "referrals:respond",
        "funds:read",
        "funds:request",
        "funds:approve",
        "funds:disburse",
        "funds:manage",
        "indicators:read",
        "indicators:read:detail",
        "casework:read",
        "casework:write",
        "webhooks:manage",
        "admin",
    }
)
ORG_TYPES = ("government", "partner")


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: client or user, its organisation, scopes and areas."""

    sub: str
    org: str
    org_type: str
    scopes: frozenset[str]
    areas: tuple[str, ...]
    jti: str = ""
    # A user's account name (the token's `preferred_username`); None for an API client.
    username: str | None = None
    issued_at: int = 0  # the token's `iat`, in seconds since the epoch

    @property
    def is_partner(self) -> bool:
        return self.org_type == "partner"

    @property
    def is_national(self) -> bool:
        return COUNTRY in self.areas

    def has(self, scope: str) -> bool:
        """Whether the token carries the scope (admin does not imply the others)."""
        return scope in self.scopes

    def require(self, *scopes: str) -> None:
        """403 unless the token carries every named scope."""
        missing = [s for s in scopes if s not in self.scopes]
        if missing:
            raise Forbidden(f"missing scope: {' '.join(missing)}")

    def covers(self, place_code: str) -> bool:
        """Whether one of the principal's areas contains the place (a gazetteer code; a
        village counts under the commune the gazetteer lists it in, see places.commune_of)."""
        if len(place_code) == 8:
            return self.covers_place(places.commune_of(place_code), place_code)
        return any(a == COUNTRY or place_code.startswith(a) for a in self.areas)

    def covers_place(self, commune: str, village: str | None = None) -> bool:
        """Whether one of the principal's areas contains a place given by its listed commune
        (and village): an area down to commune level contains the communes it prefixes,
        a village area only its own village."""
        return any(
            a == COUNTRY or (a == village if len(a) == 8 else commune.startswith(a))
            for a in self.areas
        )

    def require_covers(self, place_code: str) -> None:
        """403 when creating something at a place outside the principal's areas."""
        if not self.covers(place_code):
            raise Forbidden("the place is outside your areas")

    def require_covers_place(self, commune: str, village: str | None = None) -> None:
        """403 when creating something at a place (commune, village) outside the areas."""
        if not self.covers_place(commune, village):
            raise Forbidden("the place is outside your areas")

    def area_prefixes(self) -> list[str] | None:
        """Area prefixes for SQL filters; None means the whole country."""
        return None if self.is_national else list(self.areas)

    @property
    def is_district_level(self) -> bool:
        """An area of 4 digits or fewer (district, province or country)."""
        return any(a == COUNTRY or len(a) <= 4 for a in self.areas)


def _username(value: Any) -> str | None:
    """A user's account name from the token, or None (an API client's token has none)."""
    return value if isinstance(value, str) and value else None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Build a Principal from verified claims, rejecting malformed ones."""
    try:
        org_type = claims["org_type"]
        areas = claims["areas"]
        if org_type not in ORG_TYPES or not isinstance(areas, list):
            raise ValueError
        return Principal(
            sub=str(claims["sub"]),
            org=str(claims["org"]),
            org_type=org_type,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            areas=tuple(str(a) for a in areas),
            jti=str(claims.get("jti", "")),
            username=_username(claims.get("preferred_username")),
            issued_at=int(claims.get("iat", 0)),
        )
    except (KeyError, ValueError) as exc:
        raise Unauthorized("token lacks Komar claims") from exc


JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]


class TokenVerifier:
    """Verifies gateway-issued tokens against its JWKS; refreshes on an unknown kid."""

    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        cache_size: int = 10_000,
        refresh_interval_s: float = 1.0,
        max_key_age_s: float = 300.0,
    ) -> None:
        self._fetch = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self._refresh_interval_s = refresh_interval_s
        self._max_key_age_s = max_key_age_s
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    async def _key(self, kid: str) -> dict[str, Any]:
        # Refetch on an unknown kid (a new key), and now and then anyway, so that a key
        # the gateway has retired stops being trusted here too.
        if kid not in self._keys or self._age() > self._max_key_age_s:
            async with self._lock:
                unknown = kid not in self._keys
                if (unknown and self._age() > self._refresh_interval_s) or (
                    self._age() > self._max_key_age_s
                ):
                    try:
                        doc = await self._fetch()
                        self._keys = {k["kid"]: k for k in doc.get("keys", []) if "kid" in k}
                    except Exception as exc:
                        if unknown:  # else keep the known keys while the gateway is away
                            raise Unauthorized("signing keys unavailable") from exc
                    finally:
                        self._fetched_at = time.monotonic()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        return key

    def _age(self) -> float:
        return time.monotonic() - self._fetched_at

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token, else 401."""
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            kid = jwt.header_kid(token)
            claims = jwt.verify(
                token, await self._key(kid), issuer=self._issuer, audience=self._audience
            )
        except jwt.InvalidToken as exc:
            raise Unauthorized(str(exc)) from exc
        principal = principal_from_claims(claims)
        self._cache[token] = (principal, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


def bearer_token(request: Request) -> str:
    """The bearer token of the request, else 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller (the app keeps a TokenVerifier in state)."""
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(bearer_token(request))
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def http_jwks_fetcher(url: str) -> JwksFetcher:
    """Fetch the JWKS over HTTP (the gateway's /.well-known/jwks.json)."""
    import httpx

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url)
            response.raise_for_status()
            doc: dict[str, Any] = response.json()
            return doc

    return fetch
