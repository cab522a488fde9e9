"""The account history: who changed an account's role or activity, or deleted it, when, and in
which request. Other features record their own kinds of events (`kinds`) with the same function.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Uuid
from sqlmodel import Field as ColumnField
from sqlmodel import SQLModel

from app.accounts.history import kinds
from app.core.types import UTCDateTime, utc_now


@dataclass(frozen=True)
class EventActor:
    """Who acted, and in which request; a command-line job has no account (`cli:...`)."""

    user_id: uuid.UUID | None
    username: str
    request_id: str | None


class AccountEvent(SQLModel, table=True):
    __tablename__ = "account_event"
    __table_args__ = (Index("ix_account_event_account_id_id", "account_id", "id"),)

    # SQLite assigns ids only to a plain INTEGER primary key; PostgreSQL gets a bigint.
    id: int | None = ColumnField(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    # No foreign keys: the history outlives the account and the account that acted.
    account_id: uuid.UUID = ColumnField(sa_column=Column(Uuid, nullable=False))
    account_username: str = ColumnField(sa_column=Column(String(50), nullable=False))
    # No CHECK on the kind: later features record kinds of their own without a migration.
    kind: str = ColumnField(sa_column=Column(String(50), nullable=False))
    actor_id: uuid.UUID | None = ColumnField(default=None, sa_column=Column(Uuid, nullable=True))
    actor_username: str | None = ColumnField(
        default=None, sa_column=Column(String(50), nullable=True)
    )
    request_id: str | None = ColumnField(default=None, sa_column=Column(String(128), nullable=True))
    occurred_at: datetime = ColumnField(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    changes: dict[str, Any] = ColumnField(sa_column=Column(JSON, nullable=False))


class AccountChange(BaseModel):
    before: Any = None
    after: Any = None


class AccountEventRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "kind": kinds.ROLE_CHANGED,
                    "account_id": "3f2c8e4a-9b1d-4c6e-8f0a-2d5b7c9e1a34",
                    "account_username": "jane.doe",
                    "occurred_at": "2026-01-05T09:30:00Z",
                    "actor_id": "0b7c6f1e-2f7d-4d8e-9d3a-5c1f0f1e2a3b",
                    "actor_username": "root.admin",
                    "request_id": "5f0c2b8e9d7a4c1b8e3f6a2d1c0b9e8f",
                    "changes": {"role": {"before": "user", "after": "auditor"}},
                }
            ]
        },
    )

    id: int
    # A string, not an enum: kinds are added over time, and a client must accept new ones.
    kind: str = Field(
        description="What happened: `role_changed`, `activation_changed`, `account_deleted`, "
        "`sso_first_sign_in`, `api_key_created`, `api_key_revoked`; more kinds may appear, so "
        "keep an unknown one rather than failing on it."
    )
    account_id: uuid.UUID
    account_username: str = Field(description="The account's username when it happened.")
    occurred_at: datetime
    actor_id: uuid.UUID | None = Field(description="Null for a command-line job.")
    actor_username: str | None
    request_id: str | None
    changes: dict[str, AccountChange]


_EVENTS = TypeAdapter(list[AccountEventRead])


def account_events_json(events: Sequence[AccountEvent]) -> bytes:
    """A page of the history as the JSON array of `AccountEventRead` its `response_model` names."""
    return _EVENTS.dump_json(_EVENTS.validate_python(events, from_attributes=True))
