"""The one module that touches python-jose: RS256 only, always an explicit list."""

from __future__ import annotations

import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from jose import jwt as jose_jwt
from jose.exceptions import JOSEError

ALGORITHM = "RS256"
ALGORITHMS = [ALGORITHM]


class InvalidToken(Exception):
    """The token is not acceptable; the message says why (safe to show)."""


def generate_private_key_pem() -> str:
    """A new 2048-bit RSA private key in PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_jwk(private_pem: str, kid: str) -> dict[str, Any]:
    """The public half of a private key as a JWK with kid, use and alg."""
    public = jwk.construct(private_pem, ALGORITHM).public_key().to_dict()
    public = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()}
    public.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return public


def sign(
    claims: dict[str, Any],
    *,
    private_pem: str,
    kid: str,
    issuer: str,
    audience: str,
    ttl_s: int,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token; adds iss, aud, iat, exp and jti. Returns token and full claims."""
    now = int(time.time())
    full = {
        **claims,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_s,
        "jti": str(uuid.uuid4()),
    }
    token = jose_jwt.encode(full, private_pem, algorithm=ALGORITHM, headers={"kid": kid})
    return token, full


def header_kid(token: str) -> str:
    """The kid of a token's header, after checking the header names RS256."""
    try:
        header = jose_jwt.get_unverified_header(token)
    except JOSEError as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("token algorithm not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id")
    return kid


def verify(token: str, key: dict[str, Any], *, issuer: str, audience: str) -> dict[str, Any]:
    """Verify signature, iss, aud, exp, iat and jti; return the claims."""
    try:
        claims: dict[str, Any] = jose_jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_aud": True,
                "require_iss": True,
                "require_jti": True,
                "require_sub": True,
                "leeway": 5,
            },
        )
    except JOSEError as exc:
        raise InvalidToken(str(exc) or "invalid token") from exc
    return claims
