"""User accounts: the table and the shapes that cross the API."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    ConfigDict,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Boolean, Column, Index, Integer, String, Uuid, func
from sqlmodel import Field, SQLModel

from app.core.passwords import password_problem
from app.core.types import PartialUpdate, UTCDateTime, reject_control_characters, utc_now

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
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    username: str = Field(sa_column=Column(String(50), nullable=False))
    hashed_password: str = Field(sa_column=Column(String(255), nullable=False))
    is_admin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    is_active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    # Carried as `ver` in access tokens; bumping it revokes every token issued before.
    token_version: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )


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
        json_schema_extra={"examples": [{"is_admin": True}, {"is_active": False}]},
    )

    # Strict: "yes", 1 or "true" are refused rather than read as a grant of admin rights.
    is_admin: StrictBool | None = None
    is_active: StrictBool | None = None


class UserRead(SQLModel):
    model_config = ConfigDict(  # type: ignore[assignment]
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2c8e4a-9b1d-4c6e-8f0a-2d5b7c9e1a34",
                    "username": "jane.doe",
                    "is_admin": False,
                    "is_active": True,
                    "created_at": "2026-01-15T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime
