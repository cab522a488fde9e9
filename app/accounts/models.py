"""Accounts and their sign-ins: the tables (accounts, sign-ins, refresh tokens) and the shapes
that cross the API."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlmodel import Field, SQLModel

from app.accounts.roles import Role
from app.core.types import PartialUpdate, UTCDateTime, reject_control_characters, utc_now
from app.security.passwords import password_problem

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9._-]+$")
]
# Length only: no composition rules (NIST SP 800-63B); never truncated, so 129+ is refused.
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=128), AfterValidator(reject_control_characters)
]


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    # Login is case-insensitive, so uniqueness is too: "Alice" and "alice" are one account.
    __table_args__ = (
        Index("uq_app_user_username_lower", func.lower(Column("username")), unique=True),
        CheckConstraint(
            "role IN ({})".format(", ".join(f"'{role}'" for role in Role)), name="ck_app_user_role"
        ),
        # Single sign-on: one account per identity at the provider, whoever asks first.
        UniqueConstraint("sso_issuer", "sso_subject", name="uq_app_user_sso_identity"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    username: str = Field(sa_column=Column(String(50), nullable=False))
    # None for an account that signs in through the identity provider only.
    hashed_password: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    # One column, so that no two flags can disagree; a row inserted without one is a plain user.
    role: str = Field(
        default=Role.user.value,
        sa_column=Column(String(10), nullable=False, server_default=Role.user.value),
    )
    is_active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    # Carried as `ver` in access tokens; bumping it revokes every token issued before.
    token_version: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    # The provider's `iss` and `sub` of an account made by single sign-on; both None otherwise.
    sso_issuer: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    sso_subject: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


class UserCreate(SQLModel):
    model_config = ConfigDict(  # type: ignore[assignment]
        extra="forbid",
        json_schema_extra={
            "examples": [{"username": "jane.doe", "password": "correct horse battery"}]
        },
    )

    username: Username
    password: Password

    @field_validator("password")
    @classmethod
    def _acceptable_password(cls, password: str, info: ValidationInfo) -> str:
        # Fields validate in order, so a valid username is already in info.data.
        problem = password_problem(password, info.data.get("username"))
        if problem is not None:
            raise ValueError(problem)
        return password


class UserUpdate(PartialUpdate):
    """An admin's change to an account: only the fields sent are touched; none may be null."""

    model_config = ConfigDict(  # type: ignore[assignment]
        extra="forbid",
        json_schema_extra={"examples": [{"role": "auditor"}, {"is_active": False}]},
    )

    role: Role | None = Field(
        default=None, description="`admin`, `auditor` or `user`; not together with `is_admin`."
    )
    # Strict: "yes", 1 or "true" are refused rather than read as a grant of admin rights.
    is_admin: StrictBool | None = Field(
        default=None,
        description="The older form of `role`: true makes the account an admin; false makes an "
        "admin a user and leaves other roles as they are. Not together with `role`.",
    )
    is_active: StrictBool | None = None

    @model_validator(mode="after")
    def _role_said_once(self) -> "UserUpdate":
        if {"role", "is_admin"} <= self.model_fields_set:
            raise ValueError("send either role or is_admin, not both")
        return self


class UserRead(SQLModel):
    model_config = ConfigDict(  # type: ignore[assignment]
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2c8e4a-9b1d-4c6e-8f0a-2d5b7c9e1a34",
                    "username": "jane.doe",
                    "role": "user",
                    "is_admin": False,
                    "is_active": True,
                    "created_at": "2026-01-15T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    username: str
    role: Role
    is_admin: bool = Field(description="True for administrators (the same as `role` `admin`).")
    is_active: bool
    created_at: datetime


_USERS = TypeAdapter(list[UserRead])


def users_json(users: Sequence[User]) -> bytes:
    """A page of accounts as the JSON array of `UserRead` its `response_model` names."""
    return _USERS.dump_json(_USERS.validate_python(users, from_attributes=True))


# Refresh tokens are 43 characters; the bound is generous so that an access token pasted by
# mistake is refused as an unknown token (401) rather than as a malformed body.
TokenText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    AfterValidator(reject_control_characters),
]
# The current password is checked, never stored: only a sane bound, like the login form's.
CurrentPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    AfterValidator(reject_control_characters),
]
REFRESH_EXAMPLE = "q3v9xN2dYV1o0QwJmRk0z7sT5uBcE8hLfPaG4iWjK6M"


class SignIn(SQLModel, table=True):
    """One password sign-in: its access tokens carry its id (`sid`), its refresh tokens are the
    family of that id. Signing out revokes it, which ends all of them at once."""

    __tablename__ = "sign_in"
    __table_args__ = (Index("ix_sign_in_user_id", "user_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid,
            ForeignKey("app_user.id", ondelete="CASCADE", name="fk_sign_in_user_id_app_user"),
            nullable=False,
        )
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    # The last moment a token of it is accepted (its newest refresh token's expiry, or its newest
    # access token's, whichever is later): after that, or once revoked, it can be deleted.
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class RefreshToken(SQLModel, table=True):
    """One issued refresh token; a sign-in starts a family, each refresh adds one member."""

    __tablename__ = "refresh_token"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_refresh_token_token_hash"),
        Index("ix_refresh_token_user_id", "user_id"),
        Index("ix_refresh_token_family_id", "family_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid,
            ForeignKey("app_user.id", ondelete="CASCADE", name="fk_refresh_token_user_id_app_user"),
            nullable=False,
        )
    )
    # The sign-in: its deletion takes the family with it.
    family_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid,
            ForeignKey("sign_in.id", ondelete="CASCADE", name="fk_refresh_token_family_id_sign_in"),
            nullable=False,
        )
    )
    # The account's token version when this token was issued: a sign-out everywhere, a password
    # change or a deactivation bumps the account's, and every older token stops refreshing.
    token_version: int = Field(sa_column=Column(Integer, nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOi...",
                    "token_type": "bearer",
                    "expires_in": 1800,
                    "refresh_token": REFRESH_EXAMPLE,
                    "refresh_expires_in": 604800,
                }
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"refresh_token": REFRESH_EXAMPLE}]}
    )

    refresh_token: TokenText


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "current_password": "correct horse battery",
                    "new_password": "staple gun orbit lantern",
                }
            ]
        },
    )

    current_password: CurrentPassword
    new_password: Password

    @field_validator("new_password")
    @classmethod
    def _acceptable_new_password(cls, password: str, info: ValidationInfo) -> str:
        # The username rule needs the account: the route checks that one.
        problem = password_problem(password)
        if problem is None and password == info.data.get("current_password"):
            problem = "must differ from the current password"
        if problem is not None:
            raise ValueError(problem)
        return password
