"""Request and response models of the gateway's own API (input rejects unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.domain import LOCALES
from libs.common.auth import ORG_TYPES, SCOPES
from libs.common.inputs import Input, PlaceCode, check_merge_patch, one_of

if TYPE_CHECKING:
    Scope = str
    OrgType = str
    Locale = str
else:
    Scope = one_of(SCOPES)
    OrgType = one_of(ORG_TYPES)
    Locale = one_of(LOCALES)

# A password, kept exactly as typed (never stripped); the policy (its least length, not the
# username) is the API's: gateway.domain.password_problem.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)]
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
    return value.lower() if isinstance(value, str) and value.isascii() else value


# Usernames are case-insensitive: stored and looked up in lower case (either case is taken).
Username = Annotated[
    str,
    BeforeValidator(_casefold),
    StringConstraints(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._@+-]*$"),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 3,
            "maxLength": 64,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$",
            "description": "Case-insensitive; kept in lower case.",
        }
    ),
]


class PrincipalIn(Input):
    name: Name
    org: Org
    org_type: OrgType
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES))
    areas: list[PlaceCode] = Field(min_length=1, max_length=200)
    rate_limit_per_second: float | None = Field(default=None, ge=0.1, le=100_000)

    @field_validator("scopes")
    @classmethod
    def _sorted_scopes(cls, scopes: list[str]) -> list[str]:
        return sorted(set(scopes))

    @field_validator("areas")
    @classmethod
    def _sorted_areas(cls, areas: list[str]) -> list[str]:
        return sorted(set(areas))


class ClientCreate(PrincipalIn):
    """A new API client (a partner system, the warehouse, a service account)."""


class UserCreate(PrincipalIn):
    """A new dashboard user; the password is checked against the policy by the API."""

    username: Username
    password: Password


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
    refresh_token: str | None = Field(
        default=None,
        description="Only to users (the password and refresh_token grants), never to an API "
        "client: the next token of the sign-in, for one use (RFC 6749 §6).",
    )


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


class MeOut(BaseModel):
    """The caller, as the token it calls with names it: a user or an API client, its scopes
    (those of this token) and areas, and the language a user chose (`en` for a client)."""

    sub: str
    kind: Literal["user", "client"]
    username: str | None
    name: str
    org: str
    org_type: OrgType
    scopes: list[Scope]
    areas: list[str]
    locale: Locale


class PasswordSet(Input):
    """A user's new password, set by an administrator."""

    password: Password


class PasswordChange(Input):
    """Your password, changed: the one you have now, and the new one."""

    current_password: Password
    new_password: Password


class MePatch(Input):
    """A JSON merge patch of your own profile: the language Komar shows you."""

    locale: Locale | None = None

    @model_validator(mode="after")
    def _a_change(self) -> MePatch:
        check_merge_patch(self, ("locale",))
        return self
