"""Refresh-token table and the shapes of the auth endpoints."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from app.core.passwords import password_problem
from app.core.types import UTCDateTime, reject_control_characters, utc_now
from app.users.models import Password

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
    family_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    # The account's token version when this token was issued: a sign-out everywhere, a password
    # change or a deactivation bumps the account's, and every older token stops refreshing.
    token_version: int = Field(sa_column=Column(Integer, nullable=False))
    # SHA-256 hex digest of the token; the token itself is never stored.
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
        # Fields validate in order, so the current password is already in info.data. The
        # username rule needs the account, so the route checks that one.
        problem = password_problem(password)
        if problem is None and password == info.data.get("current_password"):
            problem = "must differ from the current password"
        if problem is not None:
            raise ValueError(problem)
        return password
