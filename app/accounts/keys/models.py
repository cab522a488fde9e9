"""API keys for programs: the table (a digest, never the key) and the shapes that cross the API."""

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict
from sqlalchemy import Column, ForeignKey, Index, String, UniqueConstraint, Uuid
from sqlmodel import Field as ColumnField
from sqlmodel import SQLModel

from app.core.types import Text100, UTCDateTime, utc_now

# A program's keys at once, expired ones aside: enough for one per program and a rotation.
MAX_LIVE_KEYS = 10
DEFAULT_LIFETIME_DAYS = 90
MAX_LIFETIME_DAYS = 365


class ApiKeyScope(StrEnum):
    """What a key may do, within what its owner's role allows at the time of each request."""

    employees_read = "employees:read"
    employees_write = "employees:write"
    history_read = "history:read"


def scopes_text(scopes: Iterable[ApiKeyScope]) -> str:
    """As stored: space-separated, in the enum's order."""
    chosen = set(scopes)
    return " ".join(scope.value for scope in ApiKeyScope if scope in chosen)


def scopes_of(text: str) -> list[ApiKeyScope]:
    return [ApiKeyScope(scope) for scope in text.split()]


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (
        # Every request with a key finds it by this index, joined to its owner.
        UniqueConstraint("key_hash", name="uq_api_key_key_hash"),
        Index("ix_api_key_user_id", "user_id"),
    )

    id: uuid.UUID = ColumnField(
        default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True)
    )
    # Deleting the account deletes its keys.
    user_id: uuid.UUID = ColumnField(
        sa_column=Column(
            Uuid,
            ForeignKey("app_user.id", ondelete="CASCADE", name="fk_api_key_user_id_app_user"),
            nullable=False,
        )
    )
    name: str = ColumnField(sa_column=Column(String(100), nullable=False))
    prefix: str = ColumnField(sa_column=Column(String(16), nullable=False))
    key_hash: str = ColumnField(sa_column=Column(String(64), nullable=False))
    scopes: str = ColumnField(sa_column=Column(String(100), nullable=False))
    created_at: datetime = ColumnField(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = ColumnField(sa_column=Column(UTCDateTime, nullable=False))
    last_used_at: datetime | None = ColumnField(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "payroll export", "scopes": ["employees:read"], "expires_in_days": 90}
            ]
        },
    )

    name: Annotated[Text100, Field(description="What the key is for; shown in the list.")]
    scopes: Annotated[
        list[ApiKeyScope],
        Field(min_length=1, max_length=len(ApiKeyScope), description="Each at most once."),
    ]
    # Strict: `true` is not one day, nor "90" ninety.
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_LIFETIME_DAYS, strict=True)] = (
        DEFAULT_LIFETIME_DAYS
    )

    @field_validator("scopes")
    @classmethod
    def _each_scope_once(cls, scopes: list[ApiKeyScope]) -> list[ApiKeyScope]:
        if len(set(scopes)) != len(scopes):
            raise ValueError("must not name a scope twice")
        return scopes


KEY_ID_EXAMPLE = "6d1f0c7e-3a9b-4f52-8e1d-0b7c5a2e9f43"
READ_EXAMPLE: JsonDict = {
    "id": KEY_ID_EXAMPLE,
    "name": "payroll export",
    "prefix": "erk_Q3v9xN2d",
    "scopes": ["employees:read"],
    "created_at": "2026-12-04T09:30:00Z",
    "expires_at": "2027-03-04T09:30:00Z",
    "last_used_at": "2026-12-05T02:00:12Z",
}


class ApiKeyRead(BaseModel):
    """A key as its owner sees it: never the key, nor its digest."""

    model_config = ConfigDict(json_schema_extra={"examples": [READ_EXAMPLE]})

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scopes: list[ApiKeyScope]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = Field(
        description="Written at most once a minute; null until the key is first used."
    )

    @classmethod
    def of(cls, key: ApiKey) -> "ApiKeyRead":
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=scopes_of(key.scopes),
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
        )


KEY_EXAMPLE = "erk_Q3v9xN2dYV1o0QwJmRk0z7sT5uBcE8hLfPaG4iWjK6Mq2Zr7Yt1Hs0"


class ApiKeyCreated(ApiKeyRead):
    """A new key: the only answer that carries the key itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                READ_EXAMPLE | {"key": KEY_EXAMPLE, "last_used_at": None},
            ]
        }
    )

    key: str = Field(
        description="Send it as `Authorization: Bearer <key>`. Shown this once: only its "
        "digest is stored."
    )
