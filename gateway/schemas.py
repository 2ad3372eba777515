"""Request and response models of the gateway's own API (input rejects unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from libs.common import places
from libs.common.auth import SCOPES

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Org = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
    ),
]


def _casefold(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# Usernames are case-insensitive: stored and looked up in lower case.
Username = Annotated[
    str,
    BeforeValidator(_casefold),
    StringConstraints(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._@+-]*$"),
]
OrgType = Literal["government", "partner"]


class _PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    org: Org
    org_type: OrgType
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES))
    areas: list[str] = Field(min_length=1, max_length=200)
    rate_limit_per_second: float | None = Field(default=None, ge=0.1, le=100_000)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope; one of: {' '.join(sorted(SCOPES))}")
        return sorted(set(scopes))

    @field_validator("areas")
    @classmethod
    def _gazetteer_areas(cls, areas: list[str]) -> list[str]:
        for area in areas:
            if not isinstance(area, str) or not places.exists(area):
                raise ValueError("every area must be a gazetteer code or KH")
        return sorted(set(areas))


class ClientCreate(_PrincipalIn):
    """A new API client (a partner system, the warehouse, a service account)."""


class UserCreate(_PrincipalIn):
    """A new dashboard user; the password is checked against the policy by the API."""

    username: Username
    password: str = Field(min_length=1, max_length=256)


class ClientOut(BaseModel):
    """An API client as the admin API shows it (never with its secret hash)."""

    client_id: str
    name: str
    org: str
    org_type: str
    scopes: list[str]
    areas: list[str]
    rate_limit_per_second: float | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientOut):
    """The create answer: the only time the secret is shown. A replay of the create (same
    Idempotency-Key) answers the same client with `client_secret` null: it is never kept."""

    client_secret: str | None


class UserOut(BaseModel):
    """A user as the admin API shows it (never with its password hash)."""

    user_id: str
    username: str
    name: str
    org: str
    org_type: str
    scopes: list[str]
    areas: list[str]
    rate_limit_per_second: float | None
    active: bool
    locked: bool
    locked_until: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class ClientPage(BaseModel):
    items: list[ClientOut]
    next_cursor: str | None


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class TokenOut(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str


class KeyOut(BaseModel):
    """A signing key's public facts."""

    kid: str
    active: bool
    created_at: datetime
    retired_at: datetime | None


class KeyList(BaseModel):
    items: list[KeyOut]


class RotationOut(BaseModel):
    kid: str
    previous_kid: str | None
